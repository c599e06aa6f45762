"""Operations about recipients rather than folders: GetMailTips, ResolveNames, ConvertId."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lab.ews.context import Context, Unmodelled
from lab.ews.soap import ItemError, element, failure, q, schema_error, success, text_of

#: MailTipTypes (GetMailTips page:
#: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/mailtipsrequested).
MAIL_TIP_TYPES = frozenset(
    "All OutOfOfficeMessage MailboxFullStatus CustomMailTip ExternalMemberCount TotalMemberCount "
    "MaxMessageSize DeliveryRestriction ModerationStatus InvalidRecipient Scope".split()
)


def get_mail_tips(ctx: Context, body: ET.Element) -> list[str]:
    """GetMailTips: MailboxFull and MaxMessageSize per recipient
    (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getmailtips-operation).
    Answered inside ``ResponseMessages`` as ``m:MailTipsResponseMessageType`` elements, as the
    published example shows."""
    requested = set(text_of(body.find(q("m:MailTipsRequested"))).split())
    if not requested or not requested <= MAIL_TIP_TYPES:
        raise schema_error(
            f"The 'MailTipsRequested' element is invalid - The value '{' '.join(sorted(requested))}' is invalid."
        )
    if requested - {"All", "MailboxFullStatus", "MaxMessageSize", "InvalidRecipient"}:
        raise Unmodelled(
            f"the mail tips {' '.join(sorted(requested - {'All', 'MailboxFullStatus', 'MaxMessageSize'}))}"
        )
    if body.find(q("m:SendingAs")) is None:
        raise schema_error("The element 'GetMailTips' has incomplete content: 'SendingAs' expected.")
    every = "All" in requested
    messages = []
    recipients = body.find(q("m:Recipients"))
    for mailbox in recipients if recipients is not None else ():
        address = text_of(mailbox.find(q("t:EmailAddress")))
        found = ctx.config.mailbox(address)
        tips = [
            element(
                "t:RecipientAddress",
                None,
                element("t:Name"),
                element("t:EmailAddress", text=address),
                element("t:RoutingType", text="SMTP"),
            ),
            element("t:PendingMailTips"),
        ]
        if found is not None:
            smtp, limits = found
            if every or "MailboxFullStatus" in requested:
                with ctx.store.lock:
                    used = ctx.store.mailbox(smtp).used_bytes()
                full = limits.quota_bytes is not None and used >= limits.quota_bytes
                tips.append(element("t:MailboxFull", text="true" if full else "false"))
            if every or "MaxMessageSize" in requested:
                tips.append(element("t:MaxMessageSize", text=str(limits.max_message_size)))
        if every or "InvalidRecipient" in requested:
            tips.append(element("t:InvalidRecipient", text="false" if found else "true"))
        messages.append(
            element(
                "m:MailTipsResponseMessageType",
                {"ResponseClass": "Success"},
                element("m:ResponseCode", text="NoError"),
                element("m:MailTips", None, *tips),
            )
        )
    return messages


def resolve_names(ctx: Context, body: ET.Element) -> list[str]:
    """ResolveNames against the organisation's mailboxes (Active Directory)
    (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/resolvenames-operation)."""
    scope = body.get("SearchScope", "ActiveDirectoryContacts")
    if scope not in ("ActiveDirectory", "ActiveDirectoryContacts", "Contacts", "ContactsActiveDirectory"):
        raise schema_error(f"The 'SearchScope' attribute is invalid - The value '{scope}' is invalid.")
    if body.get("ReturnFullContactData", "false") not in ("false", "0"):
        raise Unmodelled("ResolveNames with full contact data")
    entry = text_of(body.find(q("m:UnresolvedEntry")))
    if not entry:
        raise schema_error("The element 'ResolveNames' has incomplete content: 'UnresolvedEntry' expected.")
    wanted = entry.lower().removeprefix("smtp:")
    matches = [
        (smtp, limits)
        for smtp, limits in ctx.config.mailboxes.items()
        if smtp.lower() == wanted
        or (limits.display_name and limits.display_name.lower().startswith(wanted))
        or smtp.lower().startswith(wanted)
    ]
    if not matches:
        error = ItemError("ErrorNameResolutionNoResults", "No results were found.")
        return [failure("ResolveNames", error)]
    resolutions = [
        element(
            "t:Resolution",
            None,
            element(
                "t:Mailbox",
                None,
                element("t:Name", text=limits.display_name or smtp),
                element("t:EmailAddress", text=smtp),
                element("t:RoutingType", text="SMTP"),
                element("t:MailboxType", text="Mailbox"),
            ),
        )
        for smtp, limits in matches
    ]
    resolution_set = element(
        "m:ResolutionSet",
        {"TotalItemsInView": str(len(matches)), "IncludesLastItemInRange": "true"},
        *resolutions,
    )
    if len(matches) > 1:
        error = ItemError("ErrorNameResolutionMultipleResults", "Multiple results were found.")
        return [
            element(
                "m:ResolveNamesResponseMessage",
                {"ResponseClass": "Warning"},
                element("m:MessageText", text=error.message),
                element("m:ResponseCode", text=error.code),
                element("m:DescriptiveLinkKey", text="0"),
                resolution_set,
            )
        ]
    return [success("ResolveNames", resolution_set)]


def convert_id(ctx: Context, body: ET.Element) -> list[str]:
    """ConvertId (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/convertid-operation).

    Item ids here never change (no moves are modelled), so they are already immutable: EwsId and
    EwsImmutableId convert to the same id; anything the emulator did not issue is malformed (as
    exchangelib's version probe with Id "DUMMY" expects)."""
    destination = body.get("DestinationFormat", "")
    formats = ("EwsLegacyId", "EwsId", "EntryId", "HexEntryId", "StoreId", "OwaId", "EwsImmutableId")
    if destination not in formats:
        raise schema_error(
            f"The 'DestinationFormat' attribute is invalid - The value '{destination}' is invalid."
        )
    messages = []
    sources = body.find(q("m:SourceIds"))
    for node in sources if sources is not None else ():
        source_id, mailbox = node.get("Id", ""), node.get("Mailbox", "")
        known = ctx.config.mailbox(mailbox)
        item = ctx.store.mailbox(known[0]).find_item(source_id) if known else None
        if item is None or node.get("Format") not in ("EwsId", "EwsImmutableId"):
            messages.append(failure("ConvertId", ItemError("ErrorInvalidIdMalformed", "Id is malformed.")))
            continue
        if destination not in ("EwsId", "EwsImmutableId"):
            raise Unmodelled(f"ConvertId to {destination}")
        converted = element(
            "m:AlternateId",
            {
                "xsi:type": "t:AlternateIdType",
                "Format": destination,
                "Id": source_id,
                "Mailbox": known[0] if known else "",
            },
        )
        messages.append(success("ConvertId", converted))
    return messages

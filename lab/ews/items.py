"""CreateItem, FindItem, GetItem, UpdateItem and GetAttachment on e-mail messages.

Exchange behaviours a migration meets, each with the page it follows:

- A message created from MIME is a draft unless PR_MESSAGE_FLAGS (0x0E07) is set in the same
  CreateItem: the store's default flags for a new message include MSGFLAG_UNSENT, and the flags are
  read-only once the message is first saved (MS-OXCMSG 2.2.1.6, PidTagMessageFlags:
  https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxcmsg/a0c52fe2-3014-43a7-942d-f43f6f91c366).
  UpdateItem on 0x0E07 afterwards is refused (ErrorInvalidPropertySet); which code Exchange answers
  there is not documented.
- Without PR_MESSAGE_DELIVERY_TIME (0x0E06) the received time is the time of the import; the sent
  time (PR_CLIENT_SUBMIT_TIME, 0x0039) comes from the MIME Date header unless set (content
  conversion maps Date to it; the EWS pages say nothing about imports, so this follows what
  Exchange does as widely reported, e.g. exchangelib issue 716).
- Message size: an item larger than the mailbox's MaxReceiveSize is refused with
  ErrorMessageSizeExceeded; over the mailbox quota with ErrorQuotaExceeded (ResponseCode page:
  https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/responsecode).
  Whether CreateItem (not transport) enforces MaxReceiveSize is not documented: the emulator does,
  so that a client handles the refusal.
- GetItem's MimeContent is rendered from the stored properties (``mime.render``), never the bytes
  received.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from lab.ews import mime
from lab.ews.context import Context, HangUp, Unmodelled, prop_key
from lab.ews.fielduris import FIELD_URIS, INDEXED_FIELD_URIS
from lab.ews.folders import _page
from lab.ews.soap import ItemError, element, failure, q, schema_error, success, text_of
from lab.ews.store import (
    MSGFLAG_HASATTACH,
    MSGFLAG_READ,
    MSGFLAG_UNSENT,
    PR_CLIENT_SUBMIT_TIME,
    PR_FLAG_STATUS,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    Attachment,
    Folder,
    Item,
    Mailbox,
    PropKey,
    new_id,
)

#: Properties FindItem can't return ("ErrorInvalidPropertyRequest"; FindItem operation page: use
#: GetItem for the body, attachments, recipients and MIME).
NOT_IN_FIND = frozenset(
    "item:MimeContent item:Attachments item:Body item:UniqueBody item:NormalizedBody item:TextBody "
    "message:ToRecipients message:CcRecipients message:BccRecipients message:ReplyTo".split()
)
_DEFAULT_SHAPE = (
    "item:ItemId item:ParentFolderId item:ItemClass item:Subject item:Sensitivity item:DateTimeReceived "
    "item:Size item:Importance item:IsDraft item:HasAttachments item:DateTimeSent item:DateTimeCreated "
    "message:From message:IsRead message:InternetMessageId"
).split()
_ALL_SHAPE = (
    _DEFAULT_SHAPE
    + (
        "item:Body item:Attachments item:Categories item:InReplyTo item:InternetMessageHeaders "
        "item:IsSubmitted item:IsFromMe item:IsResend item:IsUnmodified item:DisplayTo item:DisplayCc "
        "item:LastModifiedTime item:Flag message:Sender message:ToRecipients message:CcRecipients "
        "message:References"
    ).split()
)
_FLAG_STATUS = {0: "NotFlagged", 1: "Complete", 2: "Flagged"}
#: MessageText for per-item errors a test injects (ResponseCode page's descriptions).
INJECTED_TEXT = {
    "ErrorItemCorrupt": "The item is corrupt.",
    "ErrorInternalServerError": "An internal server error occurred. The operation failed.",
    "ErrorInternalServerTransientError": "An internal server error occurred. Try again later.",
    "ErrorMailboxStoreUnavailable": "The mailbox database is temporarily unavailable.",
    "ErrorTimeoutExpired": "The request timed out.",
}


def _timestamp(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime.datetime:
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ItemError("ErrorInvalidValueForProperty", "The value is invalid for the property.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    try:
        return parsed.astimezone(datetime.UTC).replace(microsecond=0)
    except OverflowError:  # a time with no UTC form: refused as any unreadable value is
        raise ItemError("ErrorInvalidValueForProperty", "The value is invalid for the property.") from None


class Shape:
    """What an ItemShape asks for: FieldURIs, extended properties (as the request spelled them), MIME."""

    def __init__(self, node: ET.Element | None, *, find: bool) -> None:
        if node is None:
            raise schema_error("The element 'ItemShape' is required.")
        base = text_of(node.find(q("t:BaseShape")))
        if base not in ("IdOnly", "Default", "AllProperties"):
            raise schema_error(f"The 'BaseShape' element is invalid - The value '{base}' is invalid.")
        self.fields: list[str] = {
            "IdOnly": ["item:ItemId"],
            "Default": _DEFAULT_SHAPE,
            "AllProperties": _ALL_SHAPE,
        }[base]
        self.fields = list(self.fields)
        self.mime = text_of(node.find(q("t:IncludeMimeContent"))) == "true"
        self.body_type = text_of(node.find(q("t:BodyType"))) or "Best"
        if self.body_type not in ("Best", "HTML", "Text"):
            raise schema_error(
                f"The 'BodyType' element is invalid - The value '{self.body_type}' is invalid."
            )
        self.extended: list[tuple[PropKey, dict[str, str]]] = []
        self.headers: list[str] = []  # single headers asked for by IndexedFieldURI
        extra = node.find(q("t:AdditionalProperties"))
        for path in extra if extra is not None else ():
            if path.tag == q("t:ExtendedFieldURI"):
                self.extended.append((prop_key(path), dict(path.attrib)))
            elif path.tag == q("t:FieldURI"):
                uri = path.get("FieldURI", "")
                if uri not in FIELD_URIS:
                    raise schema_error(f"The 'FieldURI' attribute is invalid - The value '{uri}' is invalid.")
                if find and uri in NOT_IN_FIND:
                    raise SoapFaultInvalidProperty(uri)
                self.fields.append(uri)
            else:
                uri = path.get("FieldURI", "")
                if uri not in INDEXED_FIELD_URIS or not path.get("FieldIndex"):
                    raise schema_error(f"The 'FieldURI' attribute is invalid - The value '{uri}' is invalid.")
                if uri == "item:InternetMessageHeader":
                    self.headers.append(path.get("FieldIndex", ""))
                # contacts: and distributionlist: members don't apply to a message: left out.
        # MIME is asked for either way: IncludeMimeContent, or the item:MimeContent property.
        self.mime = self.mime or "item:MimeContent" in self.fields
        if find and self.mime:
            raise SoapFaultInvalidProperty("item:MimeContent")


class SoapFaultInvalidProperty(ItemError):
    def __init__(self, uri: str) -> None:
        super().__init__(
            "ErrorInvalidPropertyRequest", f"The property '{uri}' can't be used in FindItem requests."
        )


def render_item(mailbox: Mailbox, item: Item, shape: Shape) -> str:
    """A message with the asked properties, children in the schema's order (ItemType, MessageType);
    a property that is not set is left out, as Exchange does."""
    wanted = set(shape.fields)
    out: list[str] = []
    add = out.append
    if shape.mime:
        add(
            element(
                "t:MimeContent", {"CharacterSet": "UTF-8"}, text=base64.b64encode(mime.render(item)).decode()
            )
        )
    add(element("t:ItemId", {"Id": item.item_id, "ChangeKey": item.change_key}))
    folder = mailbox.folders[item.folder_id]
    if "item:ParentFolderId" in wanted:
        add(element("t:ParentFolderId", {"Id": folder.folder_id, "ChangeKey": folder.change_key}))
    if "item:ItemClass" in wanted:
        add(element("t:ItemClass", text=item.item_class))
    if "item:Subject" in wanted:
        add(element("t:Subject", text=item.subject))
    if "item:Sensitivity" in wanted:
        add(element("t:Sensitivity", text="Normal"))
    if "item:Body" in wanted:
        add(_body(item, shape.body_type))
    if "item:Attachments" in wanted and item.attachments:
        add(element("t:Attachments", None, *(_attachment(a, content=False) for a in item.attachments)))
    if "item:DateTimeReceived" in wanted:
        add(element("t:DateTimeReceived", text=_timestamp(item.received)))
    if "item:Size" in wanted:
        add(element("t:Size", text=str(item.size)))
    if "item:Categories" in wanted and item.categories:
        add(element("t:Categories", None, *(element("t:String", text=c) for c in item.categories)))
    if "item:Importance" in wanted:
        add(element("t:Importance", text="Normal"))
    if "item:InReplyTo" in wanted and item.header("In-Reply-To"):
        add(element("t:InReplyTo", text=item.header("In-Reply-To") or ""))
    if "item:IsSubmitted" in wanted:
        add(element("t:IsSubmitted", text="false"))
    if "item:IsDraft" in wanted:
        add(element("t:IsDraft", text=_bool(item.is_draft)))
    if "item:IsFromMe" in wanted:
        add(element("t:IsFromMe", text="false"))
    if "item:IsResend" in wanted:
        add(element("t:IsResend", text="false"))
    if "item:IsUnmodified" in wanted:
        add(element("t:IsUnmodified", text="false"))
    headers = (
        item.headers
        if "item:InternetMessageHeaders" in wanted
        else [(k, v) for k, v in item.headers if k.lower() in {h.lower() for h in shape.headers}]
    )
    if headers:
        add(
            element(
                "t:InternetMessageHeaders",
                None,
                *(element("t:InternetMessageHeader", {"HeaderName": k}, text=v) for k, v in item.headers),
            )
        )
    if "item:DateTimeSent" in wanted and item.sent is not None:
        add(element("t:DateTimeSent", text=_timestamp(item.sent)))
    if "item:DateTimeCreated" in wanted:
        add(element("t:DateTimeCreated", text=_timestamp(item.created)))
    if "item:DisplayCc" in wanted:
        add(element("t:DisplayCc", text=item.header("Cc") or ""))
    if "item:DisplayTo" in wanted:
        add(element("t:DisplayTo", text=item.header("To") or ""))
    if "item:HasAttachments" in wanted:
        add(element("t:HasAttachments", text=_bool(any(not a.is_inline for a in item.attachments))))
    for key, attrs in shape.extended:
        value = _extended_value(item, key)
        if value is None:
            continue
        values = (
            element("t:Values", None, *(element("t:Value", text=v) for v in value))
            if isinstance(value, list)
            else element("t:Value", text=value)
        )
        add(element("t:ExtendedProperty", None, element("t:ExtendedFieldURI", attrs), values))
    if "item:LastModifiedTime" in wanted:
        add(element("t:LastModifiedTime", text=_timestamp(item.created)))
    if "item:Flag" in wanted:
        add(
            element(
                "t:Flag",
                None,
                element("t:FlagStatus", text=_FLAG_STATUS.get(item.flag_status or 0, "NotFlagged")),
            )
        )
    if "message:Sender" in wanted and item.header("From"):
        add(element("t:Sender", None, _mailbox(item.header("From") or "")))
    for uri, header, tag in (
        ("message:ToRecipients", "To", "t:ToRecipients"),
        ("message:CcRecipients", "Cc", "t:CcRecipients"),
    ):
        if uri in wanted and item.header(header):
            add(element(tag, None, *(_mailbox(a) for a in _addresses(item.header(header) or ""))))
    if "message:From" in wanted and item.header("From"):
        add(element("t:From", None, _mailbox(item.header("From") or "")))
    if "message:InternetMessageId" in wanted and item.internet_message_id:
        add(element("t:InternetMessageId", text=item.internet_message_id))
    if "message:IsRead" in wanted:
        add(element("t:IsRead", text=_bool(item.is_read)))
    if "message:References" in wanted and item.header("References"):
        add(element("t:References", text=item.header("References") or ""))
    return element("t:Message", None, *out)


def xs_boolean(node: ET.Element) -> bool:
    """An xs:boolean ("true", "false", "1", "0"), else ErrorSchemaValidation."""
    value = text_of(node)
    if value not in ("true", "false", "1", "0"):
        raise schema_error(
            f"The '{node.tag.rpartition('}')[2]}' element is invalid - The value '{value}' is invalid "
            "according to its datatype 'http://www.w3.org/2001/XMLSchema:boolean'."
        )
    return value in ("true", "1")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _addresses(value: str) -> list[str]:
    import email.utils

    return [f"{n} <{a}>" if n else a for n, a in email.utils.getaddresses([value]) if a]


def _mailbox(value: str) -> str:
    import email.utils

    name, address = email.utils.parseaddr(value)
    return element(
        "t:Mailbox",
        None,
        element("t:Name", text=name or address),
        element("t:EmailAddress", text=address),
        element("t:RoutingType", text="SMTP"),
        element("t:MailboxType", text="OneOff"),
    )


def _body(item: Item, body_type: str) -> str:
    html = next((b.text for b in item.bodies if b.content_type == "text/html"), None)
    text = next((b.text for b in item.bodies if b.content_type == "text/plain"), None)
    if body_type in ("Best", "HTML") and html is not None:
        return element("t:Body", {"BodyType": "HTML"}, text=html)
    if text is not None:
        return element("t:Body", {"BodyType": "Text"}, text=text)
    return element("t:Body", {"BodyType": "Text"}, text=html or "")


def _attachment(attachment: Attachment, *, content: bool) -> str:
    children = [
        element("t:AttachmentId", {"Id": attachment.attachment_id}),
        element("t:Name", text=attachment.name),
        element("t:ContentType", text=attachment.content_type),
    ]
    if attachment.content_id:
        children.append(element("t:ContentId", text=attachment.content_id))
    children += [
        element("t:Size", text=str(len(attachment.data))),
        element("t:IsInline", text=_bool(attachment.is_inline)),
    ]
    if content:
        children.append(element("t:Content", text=base64.b64encode(attachment.data).decode()))
    return element("t:FileAttachment", None, *children)


def _extended_value(item: Item, key: PropKey) -> str | list[str] | None:
    """An extended property as Exchange reads it: the message flags, times and flag status are the
    same properties the EWS fields show."""
    if key == ("tag", f"0x{PR_MESSAGE_FLAGS:04x}", "Integer"):
        return str(item.message_flags | (MSGFLAG_HASATTACH if item.attachments else 0))
    if key == ("tag", f"0x{PR_MESSAGE_DELIVERY_TIME:04x}", "SystemTime"):
        return _timestamp(item.received)
    if key == ("tag", f"0x{PR_CLIENT_SUBMIT_TIME:04x}", "SystemTime"):
        return _timestamp(item.sent) if item.sent else None
    return item.extended.get(key)


# --- CreateItem -------------------------------------------------------------------------------


def create_item(ctx: Context, body: ET.Element) -> list[str]:
    """CreateItem of messages with MessageDisposition="SaveOnly"
    (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createitem-operation-email-message).
    One ResponseMessage per item, in order; one item's failure does not stop the others."""
    disposition = body.get("MessageDisposition")
    if disposition not in (None, "SaveOnly", "SendOnly", "SendAndSaveCopy"):
        raise schema_error(
            f"The 'MessageDisposition' attribute is invalid - The value '{disposition}' is invalid."
        )
    if disposition in ("SendOnly", "SendAndSaveCopy"):
        raise Unmodelled(f"sending mail (MessageDisposition={disposition})")
    items = body.find(q("m:Items"))
    if items is None:
        raise schema_error("The element 'CreateItem' has incomplete content: 'Items' expected.")
    messages: list[str] = []
    try:
        target = ctx.folder_of(body.find(q("m:SavedItemFolderId")))
    except ItemError as error:
        return [failure("CreateItem", error, element("m:Items")) for _ in items]
    for node in items:
        try:
            if disposition is None:
                # ResponseCode page: MessageDisposition is required for e-mail messages.
                raise ItemError(
                    "ErrorMessageDispositionRequired", "MessageDisposition attribute is required."
                )
            mailbox, folder = target if target is not None else ctx.folder(_drafts())
            injected = ctx.item_fault()
            if injected is not None:
                raise ItemError(injected, INJECTED_TEXT.get(injected, "The operation failed."))
            item = _create_one(ctx, mailbox, folder, node)
        except ItemError as error:
            messages.append(failure("CreateItem", error, element("m:Items")))
            continue
        created = element(
            "t:Message", None, element("t:ItemId", {"Id": item.item_id, "ChangeKey": item.change_key})
        )
        messages.append(success("CreateItem", element("m:Items", None, created)))
    return messages


def _drafts() -> ET.Element:
    node = ET.Element(q("t:DistinguishedFolderId"))
    node.set("Id", "drafts")
    return node


def _create_one(ctx: Context, mailbox: Mailbox, folder: Folder, node: ET.Element) -> Item:
    now = ctx.now().astimezone(datetime.UTC).replace(microsecond=0)
    raw = b""
    mime_node = node.find(q("t:MimeContent"))
    if mime_node is not None:
        try:
            raw = base64.b64decode("".join((mime_node.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            raise ItemError(
                "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            ) from None
    if mime_node is None:
        # A message made of properties (Subject, Body, recipients): the store holds the same
        # properties a MIME import would give, so it goes through the same conversion.
        raw = mime.from_properties(
            subject=text_of(node.find(q("t:Subject"))),
            body=node.find(q("t:Body")).text or "" if node.find(q("t:Body")) is not None else "",  # type: ignore[union-attr]
            html=(node.find(q("t:Body")) is not None and node.find(q("t:Body")).get("BodyType") == "HTML"),  # type: ignore[union-attr]
            recipients={
                header: [
                    text_of(a) for a in node.iterfind(f"{q(tag)}/{q('t:Mailbox')}/{q('t:EmailAddress')}")
                ]
                for header, tag in (("To", "t:ToRecipients"), ("Cc", "t:CcRecipients"), ("From", "t:From"))
            },
        )
    if ctx.poisoned(raw):
        raise HangUp()
    parsed = mime.ImportedMime(raw)
    extended: dict[PropKey, str | list[str]] = {}
    for prop in node.findall(q("t:ExtendedProperty")):
        uri = prop.find(q("t:ExtendedFieldURI"))
        if uri is None:
            raise schema_error(
                "The element 'ExtendedProperty' has incomplete content: 'ExtendedFieldURI' expected."
            )
        key = prop_key(uri)
        extended[key] = _prop_value(key, prop)
    flags_key = ("tag", f"0x{PR_MESSAGE_FLAGS:04x}", "Integer")
    # A new message's default flags: unsent (a draft) and read, as a store gives a message a client
    # composes (MAPI "Saving a Message": https://learn.microsoft.com/en-us/office/client-developer/outlook/mapi/saving-a-message).
    flags = int(str(extended.pop(flags_key))) if flags_key in extended else MSGFLAG_UNSENT | MSGFLAG_READ
    is_read = node.find(q("t:IsRead"))
    if is_read is not None:
        # IsRead is the read bit of the same PR_MESSAGE_FLAGS and comes after ExtendedProperty in
        # the schema's order: it wins over 0x0E07's read bit. (The pages are silent on the mix.)
        flags = flags | MSGFLAG_READ if xs_boolean(is_read) else flags & ~MSGFLAG_READ
    for flag_node in (
        q("t:ReminderIsSet"),
        q("t:IsReadReceiptRequested"),
        q("t:IsDeliveryReceiptRequested"),
        q("t:IsResponseRequested"),
    ):
        found = node.find(flag_node)
        if found is not None and xs_boolean(found):
            raise Unmodelled(f"{flag_node.rpartition('}')[2]} set to true")
    received_key = ("tag", f"0x{PR_MESSAGE_DELIVERY_TIME:04x}", "SystemTime")
    sent_key = ("tag", f"0x{PR_CLIENT_SUBMIT_TIME:04x}", "SystemTime")
    received = _parse_time(str(extended.pop(received_key))) if received_key in extended else now
    sent = _parse_time(str(extended.pop(sent_key))) if sent_key in extended else parsed.date
    flag = node.find(f"{q('t:Flag')}/{q('t:FlagStatus')}")
    if flag is not None:
        status = {v: k for k, v in _FLAG_STATUS.items()}.get(text_of(flag))
        if status is None:
            raise schema_error(
                f"The 'FlagStatus' element is invalid - The value '{text_of(flag)}' is invalid."
            )
        extended[("tag", f"0x{PR_FLAG_STATUS:04x}", "Integer")] = str(status)
    categories = [text_of(s) for s in node.findall(f"{q('t:Categories')}/{q('t:String')}")]
    subject_node = node.find(q("t:Subject"))
    size = len(raw)
    limits = ctx.config.mailbox(mailbox.address)
    assert limits is not None
    if size > limits[1].max_message_size:
        raise ItemError("ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
    with ctx.store.lock:
        quota = limits[1].quota_bytes
        if quota is not None and mailbox.used_bytes() + size > quota:
            raise ItemError("ErrorQuotaExceeded", "The mailbox quota has been exceeded.")
        item = Item(
            item_id=new_id(b"\x01I"),
            change_key=new_id(b"\x01K")[:40],
            folder_id=folder.folder_id,
            mailbox=mailbox.address,
            item_class=text_of(node.find(q("t:ItemClass"))) or "IPM.Note",
            subject=text_of(subject_node) if subject_node is not None else parsed.subject,
            headers=parsed.headers,
            bodies=parsed.bodies,
            attachments=parsed.attachments,
            message_flags=flags,
            received=received,
            sent=sent,
            created=now,
            size=size,
            categories=categories,
            extended=extended,
            internet_message_id=parsed.internet_message_id,
        )
        folder.items[item.item_id] = item
        mailbox.bytes_used += size
    return item


def _prop_value(key: PropKey, prop: ET.Element) -> str | list[str]:
    kind = key[-1]
    single = prop.find(q("t:Value"))
    many = prop.find(q("t:Values"))
    if kind.endswith("Array"):
        if many is None or single is not None:
            raise schema_error("An array property needs 'Values'.")
        return [_checked(kind[:-5], text_of(v) if kind != "StringArray" else (v.text or "")) for v in many]
    if single is None or many is not None:
        raise schema_error("A single-valued property needs 'Value'.")
    return _checked(kind, single.text or "" if kind == "String" else text_of(single))


def _checked(kind: str, value: str) -> str:
    """A value as its PropertyType allows (ErrorInvalidValueForProperty otherwise)."""
    try:
        if kind in ("Integer", "Long", "Short"):
            int(value)
        elif kind == "SystemTime":
            return _timestamp(_parse_time(value))
        elif kind == "Boolean" and value not in ("true", "false", "1", "0"):
            raise ValueError(value)
        elif kind == "Binary":
            base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ItemError("ErrorInvalidValueForProperty", "The value is invalid for the property.") from None
    return value


# --- FindItem ---------------------------------------------------------------------------------


def find_item(ctx: Context, body: ET.Element) -> list[str]:
    """FindItem, Shallow, with IndexedPageItemView paging and a restriction
    (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/finditem-operation)."""
    traversal = body.get("Traversal", "")
    if traversal not in ("Shallow", "SoftDeleted", "Associated"):
        raise schema_error(f"The 'Traversal' attribute is invalid - The value '{traversal}' is invalid.")
    if traversal != "Shallow":
        raise Unmodelled(f"FindItem with {traversal} traversal")
    if body.find(q("m:SortOrder")) is not None:
        raise Unmodelled("FindItem sort orders")
    try:
        shape = Shape(body.find(q("m:ItemShape")), find=True)
    except ItemError as error:
        return [failure("FindItem", error)]
    offset, limit, from_end = _page(body.find(q("m:IndexedPageItemView")))
    restriction = body.find(q("m:Restriction"))
    parents = body.find(q("m:ParentFolderIds"))
    if parents is None or not len(parents):
        raise schema_error("The element 'FindItem' has incomplete content: 'ParentFolderIds' expected.")
    messages = []
    for node in parents:
        try:
            mailbox, folder = ctx.folder(node)
            with ctx.store.lock:
                found = [
                    i for i in folder.items.values() if restriction is None or _matches(restriction[0], i)
                ]
        except ItemError as error:
            messages.append(failure("FindItem", error))
            continue
        # Exchange's default order for FindItem without SortOrder is newest received first.
        found.sort(key=lambda i: i.received, reverse=True)
        start = max(len(found) - offset - limit, 0) if from_end else offset
        page = found[start : start + limit]
        root = element(
            "m:RootFolder",
            {
                "IndexedPagingOffset": str(start + len(page)),
                "TotalItemsInView": str(len(found)),
                "IncludesLastItemInRange": _bool(start + len(page) >= len(found)),
            },
            element("t:Items", None, *(render_item(mailbox, i, shape) for i in page)),
        )
        messages.append(success("FindItem", root))
    return messages


def _matches(node: ET.Element, item: Item) -> bool:
    """A restriction (SearchExpression) on one item."""
    local = node.tag.rpartition("}")[2]
    if local in ("And", "Or"):
        results = [_matches(child, item) for child in node]
        return all(results) if local == "And" else any(results)
    if local == "Not":
        return not _matches(node[0], item)
    path = node[0]
    if local == "Exists":
        return _field(path, item) is not None
    if local in ("IsEqualTo", "IsNotEqualTo"):
        constant = node.find(f"{q('t:FieldURIOrConstant')}/{q('t:Constant')}")
        if constant is None:
            raise Unmodelled("restrictions comparing two properties")
        actual = _field(path, item)
        expected = constant.get("Value", "")
        # String comparisons in restrictions are case-insensitive in Exchange (a MAPI content
        # restriction's default); the FindItem pages don't say so for IsEqualTo.
        equal = actual is not None and not isinstance(actual, list) and actual.lower() == expected.lower()
        return equal if local == "IsEqualTo" else not equal
    raise Unmodelled(f"the restriction {local}")


def _field(path: ET.Element, item: Item) -> str | list[str] | None:
    if path.tag == q("t:ExtendedFieldURI"):
        return _extended_value(item, prop_key(path))
    uri = path.get("FieldURI", "")
    if uri == "item:Subject":
        return item.subject
    if uri == "message:InternetMessageId":
        return item.internet_message_id
    if uri == "message:IsRead":
        return _bool(item.is_read)
    raise Unmodelled(f"restrictions on {uri or 'indexed properties'}")


# --- GetItem ----------------------------------------------------------------------------------


def _locate(ctx: Context, node: ET.Element) -> tuple[Mailbox, Item]:
    item_id = node.get("Id", "")
    mailbox = ctx.mailbox()
    with ctx.store.lock:
        item = mailbox.find_item(item_id)
    if item is None:
        if not _well_formed(item_id):
            raise ItemError("ErrorInvalidIdMalformed", "Id is malformed.")
        raise ItemError("ErrorItemNotFound", "The specified object was not found in the store.")
    return mailbox, item


def _well_formed(opaque_id: str) -> bool:
    """Whether an id could be one Exchange issued (base64 of a structure), else it is malformed."""
    try:
        return len(base64.b64decode(opaque_id, validate=True)) > 10
    except (binascii.Error, ValueError):
        return False


def get_item(ctx: Context, body: ET.Element) -> list[str]:
    """GetItem (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getitem-operation-email-message)."""
    shape = Shape(body.find(q("m:ItemShape")), find=False)
    ids = body.find(q("m:ItemIds"))
    messages = []
    for node in ids if ids is not None else ():
        try:
            mailbox, item = _locate(ctx, node)
        except ItemError as error:
            messages.append(failure("GetItem", error, element("m:Items")))
            continue
        messages.append(success("GetItem", element("m:Items", None, render_item(mailbox, item, shape))))
    return messages


# --- UpdateItem -------------------------------------------------------------------------------


def update_item(ctx: Context, body: ET.Element) -> list[str]:
    """UpdateItem: read state, categories, follow-up flag and extended properties
    (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/updateitem-operation)."""
    resolution = body.get("ConflictResolution", "")
    if resolution not in ("NeverOverwrite", "AutoResolve", "AlwaysOverwrite"):
        raise schema_error(
            f"The 'ConflictResolution' attribute is invalid - The value '{resolution}' is invalid."
        )
    if body.get("MessageDisposition", "SaveOnly") != "SaveOnly":
        raise Unmodelled("sending mail from UpdateItem")
    changes = body.find(q("m:ItemChanges"))
    messages = []
    for change in changes if changes is not None else ():
        id_node = change.find(q("t:ItemId"))
        try:
            if id_node is None:
                raise schema_error("The element 'ItemChange' has incomplete content: 'ItemId' expected.")
            _, item = _locate(ctx, id_node)
            updates = change.find(q("t:Updates"))
            with ctx.store.lock:
                for update in updates if updates is not None else ():
                    _apply(item, update)
                item.change_key = new_id(b"\x01K")[:40]
        except ItemError as error:
            messages.append(failure("UpdateItem", error, element("m:Items")))
            continue
        updated = element(
            "t:Message", None, element("t:ItemId", {"Id": item.item_id, "ChangeKey": item.change_key})
        )
        messages.append(
            success(
                "UpdateItem",
                element("m:Items", None, updated),
                element("m:ConflictResults", None, element("t:Count", text="0")),
            )
        )
    return messages


def _apply(item: Item, update: ET.Element) -> None:
    path = update[0]
    setting = update.tag == q("t:SetItemField")
    source = update.find(q("t:Message")) if setting else None
    if setting and source is None:
        raise schema_error("The element 'SetItemField' has incomplete content: 'Message' expected.")
    if path.tag == q("t:ExtendedFieldURI"):
        key = prop_key(path)
        if key[0] == "tag" and int(key[1], 16) in (PR_MESSAGE_FLAGS, PR_MESSAGE_DELIVERY_TIME):
            # Read-only after the first save (MS-OXCMSG PidTagMessageFlags); the code Exchange
            # answers is not documented.
            raise ItemError("ErrorInvalidPropertySet", "Set action is invalid for property.")
        if not setting:
            item.extended.pop(key, None)
            return
        assert source is not None
        prop = source.find(q("t:ExtendedProperty"))
        if prop is None:
            raise schema_error("The element 'Message' has incomplete content: 'ExtendedProperty' expected.")
        item.extended[key] = _prop_value(key, prop)
        return
    uri = path.get("FieldURI", "")
    if uri == "message:IsRead" and source is not None:
        read_node = source.find(q("t:IsRead"))
        if read_node is None:
            raise schema_error("The element 'Message' has incomplete content: 'IsRead' expected.")
        read = xs_boolean(read_node)
        item.message_flags = item.message_flags | MSGFLAG_READ if read else item.message_flags & ~MSGFLAG_READ
    elif uri == "item:Categories":
        item.categories = (
            [text_of(s) for s in source.findall(f"{q('t:Categories')}/{q('t:String')}")]
            if source is not None
            else []
        )
    elif uri == "item:Flag":
        status_node = source.find(f"{q('t:Flag')}/{q('t:FlagStatus')}") if source is not None else None
        status = {v: k for k, v in _FLAG_STATUS.items()}.get(text_of(status_node), 0)
        item.extended[("tag", f"0x{PR_FLAG_STATUS:04x}", "Integer")] = str(status)
    else:
        raise Unmodelled(f"UpdateItem on {uri or 'indexed properties'}")


# --- GetAttachment ----------------------------------------------------------------------------


def get_attachment(ctx: Context, body: ET.Element) -> list[str]:
    """GetAttachment of file attachments
    (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getattachment-operation)."""
    ids = body.find(q("m:AttachmentIds"))
    messages = []
    mailbox = ctx.mailbox()
    for node in ids if ids is not None else ():
        wanted = node.get("Id", "")
        found = next((a for a in _attachments(mailbox) if a.attachment_id == wanted), None)
        if found is None:
            error = ItemError(
                "ErrorItemNotFound" if _well_formed(wanted) else "ErrorInvalidIdMalformed",
                "The specified object was not found in the store.",
            )
            messages.append(failure("GetAttachment", error, element("m:Attachments")))
            continue
        messages.append(
            success("GetAttachment", element("m:Attachments", None, _attachment(found, content=True)))
        )
    return messages


def _attachments(mailbox: Mailbox) -> Iterator[Attachment]:
    for folder in mailbox.folders.values():
        for item in folder.items.values():
            yield from item.attachments

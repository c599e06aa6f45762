"""Messages: create (JSON), importMime (beta), list, get, $value, update, move, delete.

Pages: https://learn.microsoft.com/en-us/graph/api/user-post-messages,
https://learn.microsoft.com/en-us/graph/api/mailfolder-post-messages,
https://learn.microsoft.com/en-us/graph/api/mailfolder-importmime?view=graph-rest-beta,
https://learn.microsoft.com/en-us/graph/api/user-list-messages,
https://learn.microsoft.com/en-us/graph/api/message-get,
https://learn.microsoft.com/en-us/graph/api/message-update,
https://learn.microsoft.com/en-us/graph/api/message-move,
https://learn.microsoft.com/en-us/graph/api/message-delete,
https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-post-singlevalueextendedproperties
(extended properties set at creation), .../singlevaluelegacyextendedproperty-get ($filter/$expand).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets
from collections.abc import Iterable
from functools import partial
from typing import Any

from lab.graph.context import Call, Reply, Tenant
from lab.graph.errors import GraphError, bad_request, not_found
from lab.graph.folders import find_folder, unknown_property
from lab.graph.header_block import block_parser
from lab.graph.mailbox import Attachment, Mailbox, Message, new_id, property_key, utc_now
from lab.graph.mime import newest_received, parse_import, render
from lab.graph.odata import evaluate
from lab.graph.query import next_link, options
from lab.graph.resources import (
    MESSAGE_EXPANDS,
    MESSAGE_PROPERTIES,
    MSGFLAG_READ,
    MSGFLAG_UNSENT,
    message_field,
    message_json,
    set_property,
    wants_text_body,
)

READ_ROLES = ("Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite")
WRITE_ROLES = ("Mail.ReadWrite",)
IMPORT_ROLES = ("Mail-Advanced.ReadWrite.All",)
DEFAULT_PAGE = 10  # user-list-messages: "the default page size is 10 messages"

#: Properties the create body may carry (message resource; the read-only ones Graph ignores are
#: accepted and ignored, as the service does with receivedDateTime and sentDateTime).
_CREATE_FIELDS = frozenset(
    {
        "@odata.type",
        "subject",
        "body",
        "from",
        "sender",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "internetMessageId",
        "importance",
        "isRead",
        "categories",
        "flag",
        "inferenceClassification",
        "isDeliveryReceiptRequested",
        "isReadReceiptRequested",
        "singleValueExtendedProperties",
        "multiValueExtendedProperties",
        "attachments",
        "internetMessageHeaders",
        # Ignored on create (exchange-targets.md: Graph ignores them; the create page lists them as
        # properties but a created message gets the creation time), with the other read-only
        # properties of a message (mailfolder-post-messages' own example sends hasAttachments and
        # bodyPreview):
        "receivedDateTime",
        "sentDateTime",
        "isDraft",
        "hasAttachments",
        "bodyPreview",
        "createdDateTime",
        "lastModifiedDateTime",
        "changeKey",
        "parentFolderId",
        "conversationId",
        "conversationIndex",
        "webLink",
        "uniqueBody",
        "id",
    }
)
_UPDATE_FIELDS = frozenset(
    {
        "isRead",
        "flag",
        "categories",
        "importance",
        "inferenceClassification",
        "isDeliveryReceiptRequested",
        "isReadReceiptRequested",
        "singleValueExtendedProperties",
        "multiValueExtendedProperties",
        # message-update: "Updatable only if isDraft = true":
        "subject",
        "body",
        "from",
        "sender",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "internetMessageId",
    }
)
#: message-update: "Updatable only if isDraft = true".
_DRAFT_ONLY = frozenset({"body", "subject", "replyTo", "internetMessageId"})
_FLAG_FIELDS = frozenset({"flagStatus", "startDateTime", "dueDateTime", "completedDateTime"})
_ATTACHMENT_FIELDS = frozenset(
    {"@odata.type", "name", "contentType", "contentBytes", "isInline", "contentId", "size", "contentLocation"}
)

_PROP_ID = re.compile(
    r"^(Binary|Boolean|Short|Integer|Long|Float|Double|Currency|SystemTime|String|CLSID)\s+"
    r"(0x[0-9A-Fa-f]{1,4}|\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}\s+(Name\s+\S.*|Id\s+0x[0-9A-Fa-f]{1,4}))$",
    re.IGNORECASE,
)


# ---- helpers -------------------------------------------------------------------------------------


def find_message(mailbox: Mailbox, ref: str) -> Message:
    message = mailbox.message(ref)
    if message is None:
        raise not_found(f"message {ref[:24]}...")
    return message


def _parse_time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(
            f"The value '{value}' is not a valid SystemTime.", "ErrorInvalidExtendedPropertyValue"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC).replace(microsecond=0)
    except (
        OverflowError
    ) as exc:  # a time with no UTC form is refused as the service refuses one it can't read
        raise bad_request(
            f"The value '{value}' is not a valid SystemTime.", "ErrorInvalidExtendedPropertyValue"
        ) from exc


def _check_property(prop: Any) -> tuple[str, str]:
    """A singleValueLegacyExtendedProperty of the body: {"id": ..., "value": ...}, validated."""
    if isinstance(prop, dict) and set(prop) - {"id", "value"}:
        raise unknown_property(
            sorted(set(prop) - {"id", "value"})[0], "microsoft.graph.singleValueLegacyExtendedProperty"
        )
    if not isinstance(prop, dict) or not isinstance(prop.get("id"), str):
        raise bad_request(
            "A singleValueExtendedProperty needs 'id' and 'value'.", "ErrorInvalidExtendedProperty"
        )
    match = _PROP_ID.match(prop["id"].strip())
    if match is None:
        raise bad_request(
            f"The extended property id '{prop['id']}' is not valid.", "ErrorInvalidExtendedProperty"
        )
    value = prop.get("value")
    if not isinstance(value, str):
        raise bad_request(
            "The value of an extended property is a string.", "ErrorInvalidExtendedPropertyValue"
        )
    kind = match.group(1).lower()
    if kind in ("integer", "long", "short") and not re.fullmatch(r"-?\d+", value.strip()):
        raise bad_request(
            f"The value '{value}' is not a valid {match.group(1)}.", "ErrorInvalidExtendedPropertyValue"
        )
    if kind == "systemtime":
        _parse_time(value)
    if kind == "boolean" and value.lower() not in ("true", "false"):
        raise bad_request(f"The value '{value}' is not a valid Boolean.", "ErrorInvalidExtendedPropertyValue")
    return prop["id"].strip(), value


def _address(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict) or not isinstance(value.get("emailAddress"), dict):
        raise bad_request(f'\'{field}\' must be a recipient: {{"emailAddress": {{"address": ...}}}}.')
    email = value["emailAddress"]
    if set(email) - {"name", "address"}:
        raise unknown_property(sorted(set(email) - {"name", "address"})[0], "microsoft.graph.emailAddress")
    return {
        "name": str(email.get("name") or email.get("address") or ""),
        "address": str(email.get("address") or ""),
    }


def _addresses(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise bad_request(f"'{field}' must be a collection of recipients.")
    return [_address(v, field) for v in value]


def _flag(value: Any) -> str:
    if isinstance(value, dict) and set(value) - _FLAG_FIELDS:
        raise unknown_property(sorted(set(value) - _FLAG_FIELDS)[0], "microsoft.graph.followupFlag")
    if not isinstance(value, dict):
        raise bad_request("'flag' must be a followupFlag.")
    status = str(value.get("flagStatus", "notFlagged"))
    canonical = {s.lower(): s for s in ("notFlagged", "complete", "flagged")}.get(status.lower())
    if canonical is None:
        raise bad_request(f"'{status}' is not a followupFlagStatus.")
    return canonical


def _categories(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise bad_request("'categories' must be a collection of strings.")
    return list(value)


def _attachments(value: Any) -> list[Attachment]:
    if not isinstance(value, list):
        raise bad_request("'attachments' must be a collection.")
    made = []
    for item in value:
        if not isinstance(item, dict):
            raise bad_request("An attachment must be an object.")
        if item.get("@odata.type") not in (
            "#microsoft.graph.fileAttachment",
            "microsoft.graph.fileAttachment",
        ):
            raise bad_request(
                "The emulator takes only #microsoft.graph.fileAttachment attachments.", "ErrorInvalidRequest"
            )
        extra = set(item) - _ATTACHMENT_FIELDS
        if extra:
            raise unknown_property(sorted(extra)[0], "microsoft.graph.fileAttachment")
        try:
            # Missing '=' padding is taken (the add-attachment page's own example lacks it).
            text = str(item.get("contentBytes", ""))
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request("contentBytes is not base64.") from exc
        made.append(
            Attachment(
                id=new_id("AAMkAGAtt"),
                name=str(item.get("name") or "attachment"),
                content_type=str(item.get("contentType") or "application/octet-stream"),
                data=data,
                is_inline=bool(item.get("isInline", False)),
                content_id=item.get("contentId"),
            )
        )
    return made


def check_size(tenant: Tenant, mailbox: Mailbox, message: Message, counted: int = 0) -> None:
    """Max receive size and quota. The Graph docs give neither answer: the emulator answers 413
    ErrorMessageSizeExceeded, and for a full mailbox the Exchange code and words Graph users report
    (microsoft-graph-docs #2927: ErrorQuotaExceeded, "Mailbox has exceeded maximum mailbox size.")
    with 507 Insufficient Storage (microsoft-graph-docs #6546 saw 507 for a full mailbox)."""
    if message.size() > mailbox.max_receive_size:
        raise GraphError(413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
    if (
        mailbox.quota_bytes is not None
        and mailbox.used_bytes() - counted + message.size() > mailbox.quota_bytes
    ):
        raise GraphError(507, "ErrorQuotaExceeded", "Mailbox has exceeded maximum mailbox size.")


def check_named_properties(tenant: Tenant, mailbox: Mailbox, keys: Iterable[str]) -> None:
    """A mailbox holds a limited number of distinct named properties; past it, creating an item
    with a new name fails (microsoft-graph-docs #12168: ErrorQuotaExceeded, "Cannot get ID from
    name."; its status isn't shown there: 507 here). Limits.named_properties sets the quota."""
    names = {key for key in keys if " name " in key or " id " in key}
    new = names - mailbox.named_properties
    if new and len(mailbox.named_properties) + len(new) > tenant.config.limits.named_properties:
        raise GraphError(507, "ErrorQuotaExceeded", "Cannot get ID from name.")
    mailbox.named_properties |= new


def _created_reply(call: Call, mailbox: Mailbox, message: Message, context: str) -> Reply:
    body = message_json(call, mailbox, message)
    reply = Reply(201, {"@odata.context": call.context_url(context), **body}, created=message.immutable_id)
    if call.immutable_ids:
        reply.headers["Preference-Applied"] = 'IdType="ImmutableId"'
    return reply


# ---- create ----------------------------------------------------------------------------------------


def create_in_drafts(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/user-post-messages"""
    return _create_json(tenant, call, params, "drafts")


def create_in_folder(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/mailfolder-post-messages"""
    return _create_json(tenant, call, params, params["folder"])


def _create_json(tenant: Tenant, call: Call, params: dict[str, str], folder_ref: str) -> Reply:
    """A JSON create always makes a draft, stamped with the creation time, unless extended
    properties set at creation say otherwise (exchange-targets.md; graph-docs #14829, #8631)."""
    call.require(*WRITE_ROLES)
    options(call, ())
    content_type = call.headers.get("content-type", "")
    if "text/plain" in content_type.lower():
        if folder_ref != "drafts":
            # Posting MIME to a folder's messages fails (exchange-targets.md: graph-docs #14829).
            raise GraphError(400, "UnableToDeserializePostBody", "were unable to deserialize ")
        return _create_mime_draft(tenant, call, params)
    body = call.json()
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        raise unknown_property(sorted(unknown)[0], "microsoft.graph.message")
    mailbox = call.mailbox
    assert mailbox is not None
    now = utc_now()
    message = Message(
        id=new_id(),
        immutable_id=new_id("AAkALg"),
        folder_id="",
        route="json",
        created=now,
        modified=now,
        received=now,
        sent=None,
        is_draft=True,
        is_read=True,
    )
    _apply_fields(message, body, creating=True)
    props = body.get("singleValueExtendedProperties", [])
    if not isinstance(props, list):
        raise bad_request("'singleValueExtendedProperties' must be a collection.")
    explicit_read = body.get("isRead")
    for prop in props:
        prop_id, value = _check_property(prop)
        set_property(message, prop_id, value)
        _apply_property_at_creation(message, property_key(prop_id), value)
    if isinstance(explicit_read, bool):
        message.is_read = explicit_read
    message.attachments = _attachments(body.get("attachments", []))
    if message.internet_message_id is None:
        message.internet_message_id = generated_message_id()
    with mailbox.lock:
        folder = find_folder(mailbox, folder_ref)
        message.folder_id = folder.id
        check_size(tenant, mailbox, message)
        check_named_properties(tenant, mailbox, message.properties)
        mailbox.add_message(message)
    tenant.count(mailbox.address, "create:json")
    return _created_reply(call, mailbox, message, f"users('{params['user']}')/messages/$entity")


def _create_mime_draft(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """user-post-messages, MIME format: base64 MIME in a text/plain body makes a draft in Drafts,
    and it stays a draft (no extended property can be given in that call)."""
    try:
        raw = base64.b64decode(b"".join(call.body.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GraphError(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        ) from exc
    message = _message_from_mime(tenant, raw, route="mime", is_draft=True, is_read=True)
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        message.folder_id = find_folder(mailbox, "drafts").id
        check_size(tenant, mailbox, message)
        mailbox.add_message(message)
    tenant.count(mailbox.address, "create:mime")
    return _created_reply(call, mailbox, message, f"users('{params['user']}')/messages/$entity")


def _message_from_mime(tenant: Tenant, raw: bytes, *, route: str, is_draft: bool, is_read: bool) -> Message:
    """The properties Exchange derives from MIME, as a new item (not yet in a folder)."""
    parsed = parse_import(raw)
    now = utc_now()
    received = now
    if route == "importMime" and tenant.config.import_mime_received == "date" and parsed.sent is not None:
        received = parsed.sent
    elif route == "importMime" and tenant.config.import_mime_received == "received":
        received = newest_received(parsed.headers()) or now
    return Message(
        id=new_id(),
        immutable_id=new_id("AAkALg"),
        folder_id="",
        route=route,
        created=now,
        modified=now,
        received=received,
        sent=parsed.sent,
        is_draft=is_draft,
        is_read=is_read,
        subject=parsed.subject,
        body_type=parsed.body_type,
        body=parsed.body,
        body_text_alternative=parsed.body_text_alternative,
        from_=parsed.from_,
        to=parsed.to,
        cc=parsed.cc,
        bcc=parsed.bcc,
        reply_to=parsed.reply_to,
        internet_message_id=parsed.internet_message_id or generated_message_id(),
        header_source=parsed.headers,
        in_reply_to=parsed.in_reply_to,
        references=parsed.references,
        attachments=parsed.attachments,
    )


def generated_message_id() -> str:
    """Exchange stamps an Internet message id on an item created without one (the create page's
    example answers one the request didn't give)."""
    return f"<{secrets.token_hex(12).upper()}@emulator.prod.outlook.com>"


def _apply_property_at_creation(message: Message, key: str, value: str) -> None:
    """The MAPI properties whose value at creation decides the item's state
    (https://learn.microsoft.com/en-us/office/client-developer/outlook/mapi/pidtagmessageflags-canonical-property,
    pidtagmessagedeliverytime-, pidtagclientsubmittime-, pidtagtransportmessageheaders-,
    pidtaginreplytoid-, pidtaginternetreferences-, pidtagflagstatus-canonical-property)."""
    if key == "integer 0x0e07":
        flags = int(value)
        message.is_draft = bool(flags & MSGFLAG_UNSENT)
        message.is_read = bool(flags & MSGFLAG_READ)
    elif key == "systemtime 0x0e06":
        message.received = _parse_time(value)
    elif key == "systemtime 0x0039":
        message.sent = _parse_time(value)
    elif key == "string 0x007d":
        message.header_source = block_parser(value)  # parsed when first read
    elif key == "string 0x1042":
        message.in_reply_to = value
    elif key == "string 0x1039":
        message.references = value
    elif key == "integer 0x1090":
        message.flag_status = {2: "flagged", 1: "complete"}.get(int(value), "notFlagged")


def _apply_fields(message: Message, body: dict[str, Any], *, creating: bool) -> None:
    if "subject" in body:
        message.subject = str(body["subject"] or "")
    if "body" in body:
        item = body["body"]
        if isinstance(item, dict) and set(item) - {"contentType", "content"}:
            raise unknown_property(
                sorted(set(item) - {"contentType", "content"})[0], "microsoft.graph.itemBody"
            )
        if not isinstance(item, dict):
            raise bad_request("'body' must be an itemBody {contentType, content}.")
        # The update page's own example sends contentType "" (taken as text here; the docs don't say).
        kind = str(item.get("contentType") or "text").lower()
        if kind not in ("text", "html"):
            raise bad_request(f"'{kind}' is not a bodyType.")
        message.body_type, message.body = kind, str(item.get("content") or "")
    if "from" in body:
        message.from_ = _address(body["from"], "from")
    if "sender" in body:
        message.sender = _address(body["sender"], "sender")
    for field, attribute in (
        ("toRecipients", "to"),
        ("ccRecipients", "cc"),
        ("bccRecipients", "bcc"),
        ("replyTo", "reply_to"),
    ):
        if field in body:
            setattr(message, attribute, _addresses(body[field], field))
    if "internetMessageId" in body:
        message.internet_message_id = str(body["internetMessageId"])
    if "importance" in body:
        # Enum members are taken in any case (the create-message page posts "Low").
        importance = str(body["importance"]).lower()
        if importance not in ("low", "normal", "high"):
            raise bad_request(f"'{body['importance']}' is not an importance.")
        message.importance = importance
    if "isRead" in body:
        if not isinstance(body["isRead"], bool):
            raise bad_request("'isRead' must be a boolean.")
        message.is_read = body["isRead"]
    if "categories" in body:
        message.categories = _categories(body["categories"])
    if "inferenceClassification" in body:
        value = str(body["inferenceClassification"]).lower()
        if value not in ("focused", "other"):
            raise bad_request(f"'{value}' is not an inferenceClassificationType.")
        message.inference = value
    if "flag" in body:
        message.flag_status = _flag(body["flag"])
    if creating and "internetMessageHeaders" in body:
        message.headers = _custom_headers(body["internetMessageHeaders"])


def _custom_headers(value: Any) -> list[tuple[str, str]]:
    """internetMessageHeaders at creation: the custom x- headers are kept (user-post-messages
    example 2, and message-get example 2 returns them); any other header is ignored, so Received,
    Date or In-Reply-To can't be set this way (exchange-targets.md)."""
    if not isinstance(value, list) or not all(
        isinstance(h, dict) and set(h) <= {"name", "value"} for h in value
    ):
        raise bad_request("'internetMessageHeaders' must be a collection of {name, value}.")
    return [
        (str(h["name"]), str(h.get("value", "")))
        for h in value
        if str(h.get("name", "")).lower().startswith("x-")
    ]


# ---- importMime ------------------------------------------------------------------------------------


def import_mime(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/mailfolder-importmime?view=graph-rest-beta
    the body is the message's MIME, base64-encoded, nothing else;
    Content-Type text/plain; 201 with the message, isDraft false. Where the received time comes
    from and whether a size limit other than the request's applies are not documented
    (GraphConfig.import_mime_received)."""
    if not tenant.config.supports_import_mime:
        # A tenant without the action: the service's answer for a segment it doesn't know (not
        # recorded as unknown: probing for it is what a client must do).
        raise GraphError(400, "BadRequest", "Resource not found for the segment 'importMime'.")
    call.require(*IMPORT_ROLES)
    options(call, ())
    if "text/plain" not in call.headers.get("content-type", "").lower():
        raise GraphError(
            415, "UnsupportedMediaType", "importMime takes Content-Type: text/plain (the base64 MIME)."
        )
    try:
        raw = base64.b64decode(b"".join(call.body.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GraphError(
            400, "UnableToDeserializePostBody", "The request body is not base64-encoded MIME."
        ) from exc
    if not raw.strip():
        raise bad_request("The MIME content is empty.", "ErrorMimeContentInvalid")
    mailbox = call.mailbox
    assert mailbox is not None
    if tenant.faults.poisoned(mailbox.address.lower(), raw):
        # A test's poison item (GraphEmulator.poison): the store fails on it, every time.
        raise GraphError(
            500, "ErrorInternalServerError", "An internal server error occurred. The operation failed."
        )
    message = _message_from_mime(tenant, raw, route="importMime", is_draft=False, is_read=False)
    with mailbox.lock:
        folder = find_folder(mailbox, params["folder"])
        message.folder_id = folder.id
        check_size(tenant, mailbox, message)
        mailbox.add_message(message)
    tenant.count(mailbox.address, "create:importMime")
    return _created_reply(call, mailbox, message, f"users('{params['user']}')/messages/$entity")


# ---- read -------------------------------------------------------------------------------------------

_LIST_OPTIONS = ("$select", "$expand", "$filter", "$top", "$skip", "$count", "$orderby")


def list_in_folder(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/mailfolder-list-messages"""
    assert call.mailbox is not None
    with call.mailbox.lock:
        folder = find_folder(call.mailbox, params["folder"])
    return _list(
        tenant, call, folder.id, f"users('{params['user']}')/mailFolders('{params['folder']}')/messages"
    )


def list_all(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/user-list-messages"""
    return _list(tenant, call, None, f"users('{params['user']}')/messages")


def _list(tenant: Tenant, call: Call, folder_id: str | None, context: str) -> Reply:
    call.require(*READ_ROLES)
    opts = options(call, _LIST_OPTIONS, MESSAGE_PROPERTIES, MESSAGE_EXPANDS, "microsoft.graph.message")
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        items = [m for m in mailbox.messages.values() if folder_id is None or m.folder_id == folder_id]
        if opts.filter is not None:
            node = opts.filter
            items = [m for m in items if evaluate(node, partial(message_field, m))]
        # Default order: newest received first (user-list-messages).
        items.sort(key=lambda m: (m.received, m.created), reverse=True)
        for name, descending in reversed(opts.orderby):
            if name not in MESSAGE_PROPERTIES:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Could not find a property named '{name}' on type 'microsoft.graph.message'.",
                    unknown=True,
                )
            items.sort(key=partial(_sort_value, name), reverse=descending)
        top = opts.top if opts.top is not None else DEFAULT_PAGE
        page = items[opts.skip : opts.skip + top]
        rows = [message_json(call, mailbox, m, opts.select, opts.expand, for_read=True) for m in page]
    tenant.count(mailbox.address, "list")
    if opts.select:
        context += "(" + ",".join(opts.select) + ")"
    body: dict[str, Any] = {"@odata.context": call.context_url(context)}
    if opts.count:
        body["@odata.count"] = len(items)
    body["value"] = rows
    if opts.skip + top < len(items):
        body["@odata.nextLink"] = next_link(call, opts.skip + top, top)
    return _with_preference(call, Reply(200, body))


def _sort_value(name: str, message: Message) -> Any:
    value = message_field(message, (name,))
    return (value is None, value if value is not None else 0)


def _with_preference(call: Call, reply: Reply) -> Reply:
    applied = []
    if call.immutable_ids:
        applied.append('IdType="ImmutableId"')
    if wants_text_body(call) and reply.status == 200:
        applied.append('outlook.body-content-type="text"')
    if applied:
        reply.headers["Preference-Applied"] = ", ".join(applied)
    return reply


def get_message(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/message-get"""
    call.require(*READ_ROLES)
    opts = options(
        call, ("$select", "$expand"), MESSAGE_PROPERTIES, MESSAGE_EXPANDS, "microsoft.graph.message"
    )
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        message = find_message(mailbox, params["message"])
        body = message_json(call, mailbox, message, opts.select, opts.expand, for_read=True)
    tenant.count(mailbox.address, "get")
    return _with_preference(
        call,
        Reply(
            200, {"@odata.context": call.context_url(f"users('{params['user']}')/messages/$entity"), **body}
        ),
    )


def get_mime(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/outlook-get-mime-message
    GET .../messages/{id}/$value, the MIME rendered from the item."""
    call.require(*READ_ROLES)
    options(call, ())
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        data = render(find_message(mailbox, params["message"]))
    tenant.count(mailbox.address, "mime")
    return Reply(200, body=data, content_type="text/plain")


# ---- change ------------------------------------------------------------------------------------------


def update_message(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/message-update
    PR_MESSAGE_FLAGS can't change the draft state after creation: the value is
    taken and the state stays (exchange-targets.md; the docs don't say how the service answers)."""
    call.require(*WRITE_ROLES)
    options(call, ())
    body = call.json()
    unknown = set(body) - _UPDATE_FIELDS
    if unknown:
        raise unknown_property(sorted(unknown)[0], "microsoft.graph.message")
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        message = find_message(mailbox, params["message"])
        if not message.is_draft and set(body) & _DRAFT_ONLY:
            raise bad_request(
                "The property can be updated only on a draft.", "ErrorInvalidPropertyUpdateSentMessage"
            )
        props = [_check_property(prop) for prop in body.get("singleValueExtendedProperties", [])]
        check_named_properties(tenant, mailbox, [property_key(prop_id) for prop_id, _ in props])
        _apply_fields(message, body, creating=False)
        for prop_id, value in props:
            set_property(message, prop_id, value)
            key = property_key(prop_id)
            if key not in ("integer 0x0e07",):
                _apply_property_at_creation(message, key, value)
        message.touch()
        shown = message_json(call, mailbox, message)
    tenant.count(mailbox.address, "update")
    return _with_preference(
        call,
        Reply(
            200, {"@odata.context": call.context_url(f"users('{params['user']}')/messages/$entity"), **shown}
        ),
    )


def move_message(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/message-move
    201 with the moved message, whose regular id is new."""
    call.require(*WRITE_ROLES)
    options(call, ())
    body = call.json()
    if set(body) - {"destinationId"}:
        raise unknown_property(sorted(set(body) - {"destinationId"})[0], "move's parameters")
    if not isinstance(body.get("destinationId"), str):
        raise bad_request('move takes exactly {"destinationId": ...}.', "ErrorInvalidRequest")
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        message = find_message(mailbox, params["message"])
        folder = find_folder(mailbox, body["destinationId"])
        mailbox.move(message, folder.id)
        shown = {"@odata.type": "#microsoft.graph.message", **message_json(call, mailbox, message)}
    tenant.count(mailbox.address, "move")
    return _with_preference(
        call,
        Reply(
            201, {"@odata.context": call.context_url(f"users('{params['user']}')/messages/$entity"), **shown}
        ),
    )


def delete_message(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/message-delete"""
    call.require(*WRITE_ROLES)
    options(call, ())
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        mailbox.delete(find_message(mailbox, params["message"]))
    tenant.count(mailbox.address, "delete")
    return Reply(204)

"""JSON renderings of mail folders, messages and attachments, in the shapes of their resource pages:
https://learn.microsoft.com/en-us/graph/api/resources/mailfolder,
https://learn.microsoft.com/en-us/graph/api/resources/message,
https://learn.microsoft.com/en-us/graph/api/resources/fileattachment."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from functools import partial
from typing import Any

from lab.graph.context import Call, iso
from lab.graph.mailbox import (
    Attachment,
    ExtendedProperty,
    Folder,
    Mailbox,
    Message,
    canonical_property_id,
    property_key,
)
from lab.graph.mime import html_to_text
from lab.graph.odata import Expand, ODataError, evaluate

FOLDER_PROPERTIES = (
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "sizeInBytes",
    "isHidden",
    "wellKnownName",
)

#: Properties of a message; the last four come only when asked ($select / $expand).
MESSAGE_PROPERTIES = (
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "uniqueBody",
    "internetMessageHeaders",
)
DEFAULT_HIDDEN = frozenset({"uniqueBody", "internetMessageHeaders"})
MESSAGE_EXPANDS = ("singleValueExtendedProperties", "multiValueExtendedProperties", "attachments")
ATTACHMENT_PROPERTIES = (
    "id",
    "lastModifiedDateTime",
    "name",
    "contentType",
    "size",
    "isInline",
    "contentId",
    "contentLocation",
    "contentBytes",
)

#: Tags whose value Exchange computes from the item's state
#: (https://learn.microsoft.com/en-us/office/client-developer/outlook/mapi/pidtagmessageflags-canonical-property).
PR_MESSAGE_FLAGS = "integer 0x0e07"
PR_MESSAGE_DELIVERY_TIME = "systemtime 0x0e06"
PR_CLIENT_SUBMIT_TIME = "systemtime 0x0039"
PR_MESSAGE_SIZE = "integer 0x0e08"
PR_FLAG_STATUS = "integer 0x1090"
MSGFLAG_READ, MSGFLAG_UNSENT = 0x1, 0x8


def folder_json(mailbox: Mailbox, folder: Folder, select: Sequence[str] | None = None) -> dict[str, Any]:
    items = list(mailbox.in_folder(folder.id))
    full: dict[str, Any] = {
        "id": folder.id,
        "displayName": folder.name,
        "parentFolderId": folder.parent_id or mailbox.root().id,
        "childFolderCount": len(mailbox.children(folder.id)),
        "unreadItemCount": sum(1 for m in items if not m.is_read),
        "totalItemCount": len(items),
        "sizeInBytes": sum(m.size() for m in items),
        "isHidden": folder.hidden,
    }
    if select:
        return {"id": folder.id, **{k: full[k] for k in select if k in full}}
    return full


def message_id_for(call: Call, message: Message) -> str:
    return message.immutable_id if call.immutable_ids else message.id


def _recipient(address: dict[str, str] | None) -> dict[str, Any] | None:
    if address is None:
        return None
    return {
        "emailAddress": {
            "name": address.get("name", address.get("address", "")),
            "address": address.get("address", ""),
        }
    }


def computed_properties(message: Message) -> dict[str, str]:
    """Values of the tags Exchange keeps on every message from its state, as Graph returns them:
    PR_MESSAGE_FLAGS, PR_MESSAGE_DELIVERY_TIME, PR_CLIENT_SUBMIT_TIME, PR_MESSAGE_SIZE (0x0E08, the
    emulator's own measure of the item) and PR_FLAG_STATUS while the item is flagged."""
    flags = (MSGFLAG_READ if message.is_read else 0) | (MSGFLAG_UNSENT if message.is_draft else 0)
    given = message.properties.get(PR_MESSAGE_FLAGS)
    if given is not None:
        flags |= int(given.value) & ~(MSGFLAG_READ | MSGFLAG_UNSENT)
    values = {
        PR_MESSAGE_FLAGS: str(flags),
        PR_MESSAGE_DELIVERY_TIME: iso(message.received) or "",
        PR_MESSAGE_SIZE: str(message.size()),
    }
    if message.sent is not None:
        values[PR_CLIENT_SUBMIT_TIME] = iso(message.sent) or ""
    if message.flag_status != "notFlagged":
        values[PR_FLAG_STATUS] = "2" if message.flag_status == "flagged" else "1"
    return values


def extended_properties(message: Message) -> list[dict[str, str]]:
    """Every single-value extended property the item has, each id in the service's spelling."""
    computed = computed_properties(message)
    result: dict[str, dict[str, str]] = {}
    for key, prop in message.properties.items():
        result[key] = {"id": canonical_property_id(prop.id), "value": computed.get(key, prop.value)}
    for key, value in computed.items():
        if key not in result:
            result[key] = {"id": canonical_property_id(key), "value": value}
    return list(result.values())


def wants_text_body(call: Call) -> bool:
    """Prefer: outlook.body-content-type="text" (user-list-messages, message-get)."""
    prefer = call.headers.get("prefer", "").lower().replace('"', "").replace(" ", "")
    return "outlook.body-content-type=text" in prefer


def text_to_html(text: str) -> str:
    """Exchange hands a text body out as HTML unless text is asked for; a rendering of that kind."""
    lines = "<br>\r\n".join(html.escape(line) for line in text.splitlines())
    return (
        '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n</head>\r\n'
        f'<body>\r\n<div class="PlainText">{lines}</div>\r\n</body>\r\n</html>\r\n'
    )


def body_for_read(call: Call, message: Message) -> dict[str, str]:
    """The body as a GET returns it: HTML unless the Prefer header asks for text (user-list-messages:
    "If the header is not specified, the body and uniqueBody properties are returned in HTML format")."""
    if wants_text_body(call):
        if message.body_type == "html":
            return {
                "contentType": "text",
                "content": message.body_text_alternative or html_to_text(message.body),
            }
        return {"contentType": "text", "content": message.body}
    if message.body_type == "text":
        return {"contentType": "html", "content": text_to_html(message.body)}
    return {"contentType": "html", "content": message.body}


_PREVIEW = 255


def body_preview(text: str) -> str:
    """The bodyPreview: the text's words joined by single spaces, cut at 255 characters. Only as
    much of the text is split as gives the same answer: the words of a prefix, joined, are a prefix
    of the whole's (only the last word may be cut short), so once they reach 255 characters the rest
    of a long body can't change them (tests/test_graph_emulator_cost.py compares)."""
    size = 4 * _PREVIEW
    while size < len(text):
        words = " ".join(text[:size].split())
        if len(words) >= _PREVIEW:
            return words[:_PREVIEW]
        size *= 4
    return " ".join(text.split())[:_PREVIEW]


def message_json(
    call: Call,
    mailbox: Mailbox,
    message: Message,
    select: Sequence[str] | None = None,
    expands: Sequence[Expand] = (),
    *,
    for_read: bool = False,
) -> dict[str, Any]:
    preview = message.body if message.body_type == "text" else (message.body_text_alternative or message.body)
    full: dict[str, Any] = {
        "@odata.etag": f'W/"{message.change_key}"',
        "id": message_id_for(call, message),
        "createdDateTime": iso(message.created),
        "lastModifiedDateTime": iso(message.modified),
        "changeKey": message.change_key,
        "categories": list(message.categories),
        "receivedDateTime": iso(message.received),
        "sentDateTime": iso(message.sent or message.created),
        "hasAttachments": any(not a.is_inline for a in message.attachments),
        "internetMessageId": message.internet_message_id,
        "subject": message.subject,
        "bodyPreview": body_preview(preview),
        "importance": message.importance,
        "parentFolderId": message.folder_id,
        "conversationId": "AAQkAG" + message.immutable_id[-20:],
        "conversationIndex": "AQHZ" + message.immutable_id[-16:],
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": message.is_read,
        "isDraft": message.is_draft,
        "webLink": f"https://outlook.office365.com/owa/?ItemID={message.id}&exvsurl=1&viewmodel=ReadMessageItem",
        "inferenceClassification": message.inference,
        "body": body_for_read(call, message)
        if for_read
        else {"contentType": message.body_type, "content": message.body},
        "sender": _recipient(message.sender or message.from_),
        "from": _recipient(message.from_),
        "toRecipients": [_recipient(a) for a in message.to],
        "ccRecipients": [_recipient(a) for a in message.cc],
        "bccRecipients": [_recipient(a) for a in message.bcc],
        "replyTo": [_recipient(a) for a in message.reply_to],
        "flag": {"flagStatus": message.flag_status},
        "uniqueBody": body_for_read(call, message)
        if for_read
        else {"contentType": message.body_type, "content": message.body},
    }
    # The headers are hidden unless selected, and reading them parses them (header_block.py).
    if select and "internetMessageHeaders" in select:
        full["internetMessageHeaders"] = [{"name": n, "value": v} for n, v in message.headers]
    if select:
        shown = {"@odata.etag": full["@odata.etag"], "id": full["id"], **{k: full[k] for k in select}}
    else:
        shown = {k: v for k, v in full.items() if k not in DEFAULT_HIDDEN}
    for expand in expands:
        if expand.name == "singleValueExtendedProperties":
            props = extended_properties(message)
            if expand.filter is not None:
                node = expand.filter
                props = [p for p in props if evaluate(node, partial(_prop_field, p))]
            if props:
                shown["singleValueExtendedProperties@odata.context"] = call.context_url(
                    f"users('{mailbox.address}')/messages('{shown['id']}')/singleValueExtendedProperties"
                )
                shown["singleValueExtendedProperties"] = props
        elif expand.name == "multiValueExtendedProperties":
            pass  # the emulator keeps none; Graph omits the empty collection too
        elif expand.name == "attachments":
            shown["attachments"] = [attachment_json(a) for a in message.attachments]
    return shown


def _prop_field(prop: dict[str, str], path: Sequence[str]) -> str:
    if len(path) == 1 and path[0] in prop:
        return prop[path[0]]
    raise ODataError(
        f"Invalid filter clause: {'/'.join(path)} is not a property of singleValueLegacyExtendedProperty"
    )


def attachment_json(attachment: Attachment, with_bytes: bool = True) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": attachment.content_type,
        "id": attachment.id,
        "lastModifiedDateTime": iso(attachment.modified),
        "name": attachment.name,
        "contentType": attachment.content_type,
        "size": len(attachment.data) + 200,
        "isInline": attachment.is_inline,
        "contentId": attachment.content_id,
        "contentLocation": None,
    }
    if with_bytes:
        shown["contentBytes"] = base64.b64encode(attachment.data).decode("ascii")
    return shown


def message_field(message: Message, path: Sequence[str]) -> Any:
    """A message's property for $filter (values as Python objects)."""
    name = path[0]
    if name == "singleValueExtendedProperties" and len(path) == 1:
        return extended_properties(message)
    simple: dict[str, Any] = {
        "id": message.id,
        "isRead": message.is_read,
        "isDraft": message.is_draft,
        "subject": message.subject,
        "receivedDateTime": message.received,
        "sentDateTime": message.sent or message.created,
        "createdDateTime": message.created,
        "lastModifiedDateTime": message.modified,
        "internetMessageId": message.internet_message_id,
        "importance": message.importance,
        "hasAttachments": any(not a.is_inline for a in message.attachments),
        "parentFolderId": message.folder_id,
    }
    if len(path) == 1 and name in simple:
        return simple[name]
    if path == ("flag", "flagStatus") or list(path) == ["flag", "flagStatus"]:
        return message.flag_status
    if len(path) == 3 and path[0] == "from" and path[1] == "emailAddress" and path[2] == "address":
        return (message.from_ or {}).get("address")
    raise ODataError(f"Invalid filter clause: the property '{'/'.join(path)}' can't be filtered on here.")


def set_property(message: Message, prop_id: str, value: str) -> None:
    message.properties[property_key(prop_id)] = ExtendedProperty(prop_id, value)

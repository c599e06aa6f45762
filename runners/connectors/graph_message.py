"""Graph request bodies for one message, built from its MIME: the JSON route's message, the state
and properties every route sets, and the attachments that must go separately.

Graph's plain create makes a draft and ignores receivedDateTime, sentDateTime and
internetMessageHeaders; what it honours at creation are the MAPI properties in
``singleValueExtendedProperties`` (https://learn.microsoft.com/graph/api/resources/extended-properties-overview;
the ids and values: ``runners.connectors.exchange_props``). So the message is created in one POST
with PR_MESSAGE_FLAGS (non-draft, read bit), the delivery and submit times, the transport headers,
In-Reply-To and References, the follow-up flag and last verb, and our key.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses
from typing import Any

from runners.connectors.exchange_props import (
    KEY_PROPERTY_NAME,
    KEY_PROPERTY_SET,
    PR_CLIENT_SUBMIT_TIME,
    PR_FLAG_STATUS,
    PR_IN_REPLY_TO_ID,
    PR_INTERNET_REFERENCES,
    PR_LAST_VERB_EXECUTED,
    PR_LAST_VERB_EXECUTION_TIME,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    PR_TRANSPORT_MESSAGE_HEADERS,
    ExchangeProps,
)
from runners.connectors.graph_mime import Part, parse
from runners.headers import from_8bit, header_text
from runners.kept import ImapState

#: Graph refuses a request body over 4 MB (413); keep clear of it with the JSON around the bytes.
REQUEST_LIMIT = 4 * 1024 * 1024
INLINE_BUDGET = REQUEST_LIMIT - 96 * 1024
#: Attachments from this size on must go through an upload session, which refuses smaller ones
#: (https://learn.microsoft.com/graph/outlook-large-attachments: 3 MB to 150 MB).
UPLOAD_SESSION_MIN = 3 * 1024 * 1024
UPLOAD_SESSION_MAX = 150 * 1024 * 1024

#: PidTagMessageSize: Exchange's size of its own rendering.
PR_MESSAGE_SIZE = 0x0E08

#: Our named properties: the key (found again with $filter) and the route that made the item.
KEY_PROPERTY = f"String {{{KEY_PROPERTY_SET}}} Name {KEY_PROPERTY_NAME}"
ROUTE_PROPERTY = f"String {{{KEY_PROPERTY_SET}}} Name CutoverRoute"
#: Set ("attachments") on a message created before all its attachments are on, emptied once they
#: are: a crash mid-way leaves an item that recovery recognises as unfinished and removes. (Graph
#: can't delete an extended property, so "done" is the empty string.)
PENDING_PROPERTY = f"String {{{KEY_PROPERTY_SET}}} Name CutoverPending"


def integer(tag: int) -> str:
    return f"Integer 0x{tag:04X}"


def system_time(tag: int) -> str:
    return f"SystemTime 0x{tag:04X}"


def string(tag: int) -> str:
    return f"String 0x{tag:04X}"


def graph_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Attachment:
    name: str
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None

    def json(self) -> dict[str, Any]:
        """The fileAttachment as Graph takes it in a message or an attachments POST."""
        return self.json_meta() | {"contentBytes": base64.b64encode(self.data).decode("ascii")}

    def json_parts(self) -> list[bytes]:
        """``json()`` encoded, in parts around its base64 (the same JSON, made without copies)."""
        meta = json.dumps(self.json_meta()).encode()[:-1] + b',"contentBytes":"'
        return [meta, base64.b64encode(self.data), b'"}']

    def json_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "isInline": self.inline,
        }
        if self.content_id:
            out["contentId"] = self.content_id
        return out

    def upload_item(self) -> dict[str, Any]:
        """The ``AttachmentItem`` of createUploadSession."""
        out: dict[str, Any] = {
            "attachmentType": "file",
            "name": self.name,
            "size": len(self.data),
            "contentType": self.content_type,
            "isInline": self.inline,
        }
        if self.content_id:
            out["contentId"] = self.content_id
        return out


@dataclass(slots=True)
class JsonMessage:
    """The create request, and what must follow it (attachments too large to ride along). The
    request is kept in parts (each inline attachment's base64 one of them), sent one after the
    other: a large message is never copied whole into one body."""

    parts: list[bytes]
    later: list[Attachment] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


def state_properties(props: ExchangeProps, route: str, *, pending: bool = False) -> list[dict[str, str]]:
    """Extended properties both routes set: key, route, received time, follow-up flag, last verb."""
    out = [{"id": KEY_PROPERTY, "value": props.key}, {"id": ROUTE_PROPERTY, "value": route}]
    if pending:
        out.append({"id": PENDING_PROPERTY, "value": "attachments"})
    if props.received is not None:
        out.append({"id": system_time(PR_MESSAGE_DELIVERY_TIME), "value": graph_time(props.received)})
    if props.flag_status is not None:
        out.append({"id": integer(PR_FLAG_STATUS), "value": str(props.flag_status)})
    if props.last_verb is not None:
        out.append({"id": integer(PR_LAST_VERB_EXECUTED), "value": str(props.last_verb)})
        if props.last_verb_time is not None:
            out.append(
                {"id": system_time(PR_LAST_VERB_EXECUTION_TIME), "value": graph_time(props.last_verb_time)}
            )
    return out


def state_fields(state: ImapState) -> dict[str, Any]:
    """The writable message fields for read state, follow-up flag and categories."""
    return {
        "isRead": state.read,
        "flag": {"flagStatus": "flagged" if state.flagged else "notFlagged"},
        "categories": list(state.categories),
    }


FINISHED = json.dumps({"singleValueExtendedProperties": [{"id": PENDING_PROPERTY, "value": ""}]}).encode()


def state_patch(props: ExchangeProps, route: str) -> bytes:
    """The one PATCH after an importMime: key, route, times and state."""
    patch = state_fields(props.state)
    patch["singleValueExtendedProperties"] = state_properties(props, route)
    return json.dumps(patch).encode()


def json_message(mime: bytes, props: ExchangeProps) -> JsonMessage:
    """The JSON route's create request for ``mime``; attachments that would take it past 4 MB are
    left for afterwards (``later``) and the item is marked pending until they are on."""
    tree = parse(mime)
    message = tree.headers
    body_part, attachments = _split(tree)
    created: dict[str, Any] = {
        "subject": _header(message, "subject"),
        "body": _body(body_part),
        **_addresses(message),
        **state_fields(props.state),
    }
    message_id = _header(message, "message-id")
    if message_id:
        created["internetMessageId"] = message_id
    properties = [{"id": integer(PR_MESSAGE_FLAGS), "value": str(props.message_flags)}]
    if props.sent is not None:
        properties.append({"id": system_time(PR_CLIENT_SUBMIT_TIME), "value": graph_time(props.sent)})
    properties.append({"id": string(PR_TRANSPORT_MESSAGE_HEADERS), "value": _header_block(mime)})
    for tag, name in ((PR_IN_REPLY_TO_ID, "in-reply-to"), (PR_INTERNET_REFERENCES, "references")):
        value = _header(message, name)
        if value:
            properties.append({"id": string(tag), "value": value})
    # Encoded once, as bytes: the fields, then the properties and the attachments spliced in (an
    # attachment's base64 is not copied into a str nor scanned again by the JSON encoder).
    head = json.dumps(created).encode()
    later: list[Attachment] = []
    inline: list[list[bytes]] = []
    size = len(head) + sum(len(p["value"]) + 64 for p in properties) + 512
    for attachment in sorted(attachments, key=lambda a: len(a.data)):
        cost = (len(attachment.data) + 2) // 3 * 4 + len(attachment.name) * 2 + 256
        if size + cost <= INLINE_BUDGET:
            inline.append(attachment.json_parts())
            attachment.data = b""  # its base64 is what is sent: the decoded bytes can go now
            size += cost
        else:
            later.append(attachment)
    properties += state_properties(props, "json", pending=bool(later))
    parts = [head[:-1], b',"singleValueExtendedProperties":', json.dumps(properties).encode()]
    for n, attachment_parts in enumerate(inline):
        parts.append(b"," if n else b',"attachments":[')
        parts += attachment_parts
    parts.append(b"]}" if inline else b"}")
    return JsonMessage(parts, later)


def _split(message: Part) -> tuple[Part | None, list[Attachment]]:
    """The part that becomes the message body (HTML preferred, as Outlook shows it) and every other
    leaf part as an attachment, inline ones (with a Content-ID inside multipart/related) marked."""
    leaves = message.leaves()
    texts = [part for part, _ in leaves if _is_body_text(part)]
    chosen = next((p for p in texts if p.headers.get_content_subtype() == "html"), None) or next(
        iter(texts), None
    )
    bodies: set[int] = set()
    if chosen is not None:
        bodies.add(id(chosen))
        parent = chosen.parent
        if parent is not None and parent.headers.get_content_type() == "multipart/alternative":
            # The other alternatives of the chosen body are the same text: not attachments.
            bodies.update(id(p) for p in parent.children if p.headers.get_content_maintype() == "text")
    attachments = [
        _attachment(part, index + 1, related)
        for index, (part, related) in enumerate(p for p in leaves if id(p[0]) not in bodies)
    ]
    return chosen, attachments


def _is_body_text(part: Part) -> bool:
    headers = part.headers
    return (
        headers.get_content_type() in ("text/plain", "text/html")
        and headers.get_content_disposition() != "attachment"
        and headers.get_filename() is None
    )


def _attachment(part: Part, index: int, related: bool) -> Attachment:
    headers = part.headers
    content_type = headers.get_content_type()
    # A forwarded message (message/rfc822) is attached as the bytes it came as.
    data = part.raw if content_type == "message/rfc822" else part.payload()
    content_id = _decoded(headers.get("content-id")).strip().strip("<>") or None
    name = _decoded(headers.get_filename()) or _default_name(content_type, index)
    inline = related and content_id is not None and headers.get_content_disposition() != "attachment"
    return Attachment(name, content_type, data, inline, content_id)


def _default_name(content_type: str, index: int) -> str:
    extension = {"message/rfc822": ".eml", "text/plain": ".txt", "text/html": ".html"}.get(content_type, "")
    return f"attachment-{index}{extension}"


def _body(part: Part | None) -> dict[str, str]:
    if part is None:
        return {"contentType": "text", "content": ""}
    data = part.payload()
    content = ""
    for charset in (part.headers.get_content_charset(), "utf-8", "windows-1252"):
        if not charset:
            continue
        try:
            content = data.decode(charset)
            break
        except (LookupError, UnicodeDecodeError):
            continue
    kind = "html" if part.headers.get_content_subtype() == "html" else "text"
    return {"contentType": kind, "content": content}


def _decoded(value: object) -> str:
    """A header value with its RFC 2047 encoded words decoded (each alone: one broken word leaves
    the others decoded), whitespace collapsed."""
    return "" if value is None else header_text(str(value))


def _raw_values(message: Message, name: str) -> list[str]:
    """The values of header ``name``, raw 8-bit bytes read as text as ``runners.kept`` reads them
    (UTF-8, else Windows-1252): compat32's ``get`` would make each such byte a U+FFFD."""
    return [
        from_8bit(str(value).encode("utf-8", "surrogateescape"))
        for key, value in message.raw_items()
        if key.lower() == name
    ]


def _header(message: Message, name: str) -> str:
    values = _raw_values(message, name)
    return _decoded(values[0]) if values else ""


def _addresses(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field_name, header in (
        ("toRecipients", "to"),
        ("ccRecipients", "cc"),
        ("bccRecipients", "bcc"),
        ("replyTo", "reply-to"),
    ):
        recipients = _recipients(message, header)
        if recipients:
            out[field_name] = recipients
    sender = _recipients(message, "from")
    if sender:
        out["from"] = sender[0]
        out["sender"] = (_recipients(message, "sender") or sender)[0]
    return out


def _recipients(message: Message, header: str) -> list[dict[str, Any]]:
    values = _raw_values(message, header)
    return [
        {"emailAddress": {"name": _decoded(name), "address": address}}
        if name
        else {"emailAddress": {"address": address}}
        for name, address in getaddresses(values)
        if address
    ]


def _header_block(mime: bytes) -> str:
    """The message's header block as Exchange keeps it in PR_TRANSPORT_MESSAGE_HEADERS."""
    end = mime.find(b"\r\n\r\n")
    if end < 0:
        end = mime.find(b"\n\n")
    block = mime if end < 0 else mime[: end + 2]
    # Line by line, raw 8-bit as the fields read it: one Latin-1 line doesn't change the others.
    return "".join(from_8bit(line) for line in block.splitlines(keepends=True))

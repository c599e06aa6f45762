"""MIME in and out: what importMime keeps of a message, and the MIME that GET .../$value renders.

Exchange doesn't keep the bytes it was given: it keeps properties and renders MIME from them when
asked (https://learn.microsoft.com/en-us/graph/outlook-get-mime-message: "the MIME content is
generated from the item's properties"), so $value here is built from the stored Message, never
from the request body.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser

from lab.graph.header_block import raw_items_parser
from lab.graph.mailbox import Attachment, Message, new_id

_POLICY = email.policy.default.clone(linesep="\r\n")


def _addresses(value: str | None) -> list[dict[str, str]]:
    if not value:
        return []
    return [
        {"name": name or address, "address": address}
        for name, address in email.utils.getaddresses([value])
        if address
    ]


def _date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC).replace(microsecond=0)
    except OverflowError:  # 31 Dec 9999 west of UTC: no instant, so no sent time (not a 500)
        return None


def newest_received(headers: list[tuple[str, str]]) -> dt.datetime | None:
    """The date after the last ';' of the topmost Received header."""
    for name, value in headers:
        if name.lower() == "received" and ";" in value:
            return _date(value.rsplit(";", 1)[1].strip())
    return None


@dataclass(slots=True)
class ParsedMime:
    """What Exchange keeps of a MIME message it is given."""

    subject: str
    from_: dict[str, str] | None
    to: list[dict[str, str]]
    cc: list[dict[str, str]]
    bcc: list[dict[str, str]]
    reply_to: list[dict[str, str]]
    internet_message_id: str | None
    in_reply_to: str | None
    references: str | None
    sent: dt.datetime | None
    #: The headers, parsed when called (header_block.raw_items_parser).
    headers: Callable[[], list[tuple[str, str]]]
    body_type: str
    body: str
    body_text_alternative: str | None
    attachments: list[Attachment] = field(default_factory=list)


def parse_import(raw: bytes) -> ParsedMime:
    """The properties Exchange derives from a MIME message (subject, addresses, body, attachments,
    headers, Date as sentDateTime)."""
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    headers = raw_items_parser(list(message.raw_items()))
    text = html_body = None
    attachments: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        ctype = part.get_content_type()
        if disposition is None and ctype == "text/plain" and text is None:
            text = _text_of(part)
        elif disposition is None and ctype == "text/html" and html_body is None:
            html_body = _text_of(part)
        else:
            data = part.get_payload(decode=True)
            attachments.append(
                Attachment(
                    id=new_id("AAMkAGAtt"),
                    name=part.get_filename() or "attachment",
                    content_type=ctype,
                    data=data if isinstance(data, bytes) else b"",
                    is_inline=disposition == "inline",
                    content_id=(part.get("Content-ID") or "").strip("<>") or None,
                )
            )

    def header(name: str) -> str | None:
        value = message.get(name)
        return str(value) if value is not None else None

    from_ = _addresses(header("From"))
    return ParsedMime(
        subject=header("Subject") or "",
        from_=from_[0] if from_ else None,
        to=_addresses(header("To")),
        cc=_addresses(header("Cc")),
        bcc=_addresses(header("Bcc")),
        reply_to=_addresses(header("Reply-To")),
        internet_message_id=header("Message-ID"),
        in_reply_to=header("In-Reply-To"),
        references=header("References"),
        sent=_date(header("Date")),
        headers=headers,
        body_type="html" if html_body is not None else "text",
        body=html_body if html_body is not None else (text or ""),
        body_text_alternative=text if html_body is not None else None,
        attachments=attachments,
    )


def _text_of(part: EmailMessage) -> str:
    try:
        return str(part.get_content())
    except (LookupError, ValueError):
        data = part.get_payload(decode=True)
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else ""


def _format_address(address: dict[str, str]) -> str:
    name, addr = address.get("name") or "", address.get("address") or ""
    return email.utils.formataddr(("" if name == addr else name, addr))


def html_to_text(markup: str) -> str:
    """Exchange derives the text alternative of an HTML body; a rough rendering of the same kind."""
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", markup)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


_RENDERED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)


def render(message: Message) -> bytes:
    """The MIME of a stored message, from its properties."""
    out = EmailMessage(policy=_POLICY)
    out["MIME-Version"] = "1.0"
    if message.from_:
        out["From"] = _format_address(message.from_)
    for name, addresses in (("To", message.to), ("Cc", message.cc), ("Reply-To", message.reply_to)):
        if addresses:
            out[name] = ", ".join(_format_address(a) for a in addresses)
    out["Subject"] = message.subject
    out["Date"] = email.utils.format_datetime(message.sent or message.created)
    if message.internet_message_id:
        out["Message-ID"] = message.internet_message_id
    if message.in_reply_to:
        out["In-Reply-To"] = message.in_reply_to
    if message.references:
        out["References"] = message.references
    # The transport headers Exchange keeps (PR_TRANSPORT_MESSAGE_HEADERS) come back too, as in the
    # example of outlook-get-mime-message (Received, Thread-Topic, X-MS-...); the headers above are
    # rendered from the item's properties and win.
    for name, value in message.headers:
        if name.lower() not in _RENDERED:
            try:
                out[name] = value
            except (ValueError, TypeError):
                continue
    if message.body_type == "html":
        out.set_content(message.body_text_alternative or html_to_text(message.body))
        out.add_alternative(message.body, subtype="html")
    else:
        out.set_content(message.body)
    for attachment in message.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        out.add_attachment(
            attachment.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.name,
            disposition="inline" if attachment.is_inline else "attachment",
            cid=f"<{attachment.content_id}>" if attachment.content_id else None,
        )
    return out.as_bytes()

"""MIME in and out, as Exchange does it: converted into properties on the way in, rendered anew
from those properties on the way out.

Exchange keeps no MIME: its content conversion turns an imported message into MAPI properties
(subject, recipients, body, attachments, a subset of the headers) and produces new MIME from them
when asked ("Content conversion" in
https://learn.microsoft.com/en-us/exchange/mail-flow/content-conversion/content-conversion).
So GetItem's MimeContent has new part boundaries, its own transfer encodings and only the headers
kept here, never the bytes that were sent. Which headers Exchange renders back beyond the ones
listed in ``KEPT`` is not documented; the emulator keeps just those.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import email.utils
import secrets
from email.message import EmailMessage, Message

from lab.ews.store import Attachment, BodyPart, Item, new_id

#: Headers kept as properties and rendered back (Message-ID, From, To, Cc, Subject, Date,
#: In-Reply-To, References); MIME-Version and Content-Type are rendered anew.
KEPT = ("Message-ID", "From", "To", "Cc", "Subject", "Date", "In-Reply-To", "References")


class ImportedMime:
    """What content conversion makes of one imported MIME message."""

    def __init__(self, raw: bytes) -> None:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.headers: list[tuple[str, str]] = []
        for name in KEPT:
            value = message.get(name)
            if value is not None:
                self.headers.append((name, _decoded(str(value))))
        self.subject = _decoded(str(message.get("Subject", "")))
        self.internet_message_id = _one_line(str(message.get("Message-ID", ""))) or None
        self.date = _parse_date(message.get("Date"))
        self.bodies: list[BodyPart] = []
        self.attachments: list[Attachment] = []
        self._walk(message)

    def _walk(self, message: Message) -> None:
        for part in message.walk():
            if part.is_multipart():
                continue
            content_type = part.get_content_type()
            disposition = (part.get_content_disposition() or "").lower()
            filename = part.get_filename()
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
                charset = part.get_content_charset() or "us-ascii"
                try:
                    text = data.decode(charset, errors="replace")
                except LookupError:
                    text = data.decode("latin-1")
                self.bodies.append(BodyPart(content_type, text))
                continue
            self.attachments.append(
                Attachment(
                    attachment_id=new_id(b"\x01A"),
                    name=_decoded(filename) if filename else "",
                    content_type=content_type,
                    data=data,
                    content_id=_one_line(str(part.get("Content-ID", ""))).strip("<>") or None,
                    is_inline=disposition == "inline",
                )
            )


def from_properties(*, subject: str, body: str, html: bool, recipients: dict[str, list[str]]) -> bytes:
    """The MIME a message made of EWS properties converts to (no Date, no Message-ID: the store
    has none for a message that was never sent)."""
    message = EmailMessage(policy=email.policy.SMTP)
    for header, addresses in recipients.items():
        if addresses:
            message[header] = ", ".join(addresses)
    if subject:
        message["Subject"] = subject
    message.set_content(body, subtype="html" if html else "plain", charset="utf-8")
    return message.as_bytes()


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _decoded(value: str) -> str:
    """A header value with RFC 2047 words decoded and folding undone, as a property holds it."""
    try:
        return _one_line(str(email.header.make_header(email.header.decode_header(value))))
    except (ValueError, LookupError, UnicodeDecodeError):
        return _one_line(value)


def _parse_date(value: object) -> datetime.datetime | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    try:
        return parsed.astimezone(datetime.UTC)
    except OverflowError:  # 31 Dec 9999 west of UTC: no instant, so no sent time (not a dropped connection)
        return None


def render(item: Item) -> bytes:
    """New MIME from the item's properties: Exchange's own boundaries ("_000_…_"), quoted-printable
    text, base64 attachments, and only the kept headers (Date from the sent time when set)."""
    message = EmailMessage(policy=email.policy.SMTP)
    for name, value in item.headers:
        if name == "Date" and item.sent is not None:
            continue
        message[name] = value
    if item.sent is not None:
        message["Date"] = email.utils.format_datetime(item.sent)
    if not item.headers and item.subject:
        message["Subject"] = item.subject
    message["MIME-Version"] = "1.0"
    texts = [part for part in item.bodies]
    tag = secrets.token_hex(12).upper()
    if not texts:
        texts = [BodyPart("text/plain", "")]
    if len(texts) == 1 and not item.attachments:
        _set_text(message, texts[0])
        return message.as_bytes()
    message.set_type("multipart/mixed" if item.attachments else "multipart/alternative")
    message.set_boundary(f"_000_{tag}_")
    body: EmailMessage = message
    if item.attachments and len(texts) > 1:
        body = EmailMessage(policy=email.policy.SMTP)
        body.set_type("multipart/alternative")
        body.set_boundary(f"_001_{tag}_")
        message.attach(body)
    for text in texts:
        part = EmailMessage(policy=email.policy.SMTP)
        _set_text(part, text)
        del part["MIME-Version"]
        body.attach(part)
    for attachment in item.attachments:
        part = EmailMessage(policy=email.policy.SMTP)
        maintype, _, subtype = attachment.content_type.partition("/")
        part.set_content(
            attachment.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            disposition="inline" if attachment.is_inline else "attachment",
            filename=attachment.name or None,
            cid=f"<{attachment.content_id}>" if attachment.content_id else None,
        )
        del part["MIME-Version"]
        message.attach(part)
    return message.as_bytes()


def _set_text(part: EmailMessage, body: BodyPart) -> None:
    subtype = body.content_type.partition("/")[2]
    text = body.text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    part.set_content(text, subtype=subtype, charset="utf-8", cte="quoted-printable")

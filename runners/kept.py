"""What an Exchange-family target (EWS, Microsoft Graph) keeps of a message, and how to compare it.

Exchange converts MIME into its own store and renders it again on the way out: new boundaries, its
own transfer encodings, headers it does not keep dropped. Byte identity can't be had and is never
claimed. What can be proven per message is what the service keeps: our key on the item, the received
and sent times, the state the IMAP flags stood for, and with ``--deep`` the headers Exchange keeps,
the text of each body part and the bytes of each attachment.

Normalisation, so that a faithful re-rendering compares equal and a changed field does not:
- header values are unfolded, RFC 2047 decoded and their whitespace collapsed; From, To and Cc are
  compared as sets of lower-cased addresses; Date as the instant it names;
- body text is decoded by its charset (undeclared 8-bit as UTF-8, else Windows-1252), line endings
  become LF, trailing whitespace of each line and trailing blank lines are dropped;
- an attachment is its decoded bytes' SHA-256; an attached message (message/rfc822), which Exchange
  stores as an item and renders anew, is the SHA-256 of its own normalised content.

``ImapState.from_flags`` is the one place that decides how IMAP flags map to Exchange state; the
adapters build their MAPI properties from it and verification expects what it says.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from runners.headers import decode_header_value
from runners.imap.dates import parse_date_time

KEPT_HEADERS = ("message-id", "from", "to", "cc", "subject", "date", "in-reply-to", "references")
_ADDRESS_HEADERS = frozenset({"from", "to", "cc"})
#: Keywords that are IMAP protocol state, not a user's labels: never categories.
_NOT_CATEGORIES = frozenset(
    k.lower()
    for k in ("$Forwarded", "$MDNSent", "$Junk", "$NotJunk", "Junk", "NonJunk", "$Phishing", "$Recent")
)
_SPACE = re.compile(r"\s+")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ImapState:
    """The state IMAP flags stand for, in the terms Exchange keeps."""

    read: bool = False
    flagged: bool = False
    answered: bool = False
    forwarded: bool = False
    draft: bool = False
    categories: tuple[str, ...] = ()

    @classmethod
    def from_flags(cls, flags: Sequence[str]) -> ImapState:
        lowered = {f.lower() for f in flags}
        categories: dict[str, str] = {}
        for flag in flags:
            if flag.startswith("\\") or flag.lower() in _NOT_CATEGORIES:
                continue
            categories.setdefault(flag.lower(), flag)  # IMAP keywords are case-insensitive
        return cls(
            read="\\seen" in lowered,
            flagged="\\flagged" in lowered,
            answered="\\answered" in lowered,
            forwarded="$forwarded" in lowered,
            draft="\\draft" in lowered,
            categories=tuple(sorted(categories.values(), key=str.lower)),
        )


@dataclass(frozen=True, slots=True)
class KeptItem:
    """One item as the target keeps it, or as the source says it should be kept."""

    #: The ledger's key (``AppendItem.key``), stored on the item in our named property.
    key: str
    #: Aware, UTC, whole seconds.
    received: datetime | None
    sent: datetime | None
    state: ImapState
    #: How the item was made: "mime" (EWS CreateItem), "importMime" or "json" (Graph).
    route: str = ""
    #: The size the target reports for the item (its own rendering: not the source's size).
    size: int = 0
    #: ``--deep`` only, None otherwise: KEPT_HEADERS present, normalised; the text of each text part;
    #: sorted SHA-256 (hex) of each attachment.
    headers: tuple[tuple[str, str], ...] | None = None
    bodies: tuple[str, ...] | None = None
    attachments: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Content:
    headers: tuple[tuple[str, str], ...]
    bodies: tuple[str, ...]
    attachments: tuple[str, ...]


def utc_seconds(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC without microseconds (Exchange keeps whole seconds); naive means UTC. None
    when it has no UTC form: 31 Dec 9999 west of UTC, 1 Jan 0001 east of it."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        return aware.astimezone(UTC).replace(microsecond=0)
    except OverflowError:  # a Date header can say so: the instant is no time, not the mailbox's end
        return None


def iso_utc_seconds(text: object) -> datetime | None:
    """An ISO 8601 time as Exchange answers it (``...Z`` or an offset), by ``utc_seconds``; None
    when ``text`` is not a non-empty string that parses."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return utc_seconds(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def sent_time(body: bytes) -> datetime | None:
    """The Date header's instant, when the message has one that parses."""
    raw = _header_bytes(body, b"date")
    if raw is None:
        return None
    try:
        return utc_seconds(parsedate_to_datetime(decode_header_value(raw).strip()))
    except (TypeError, ValueError, IndexError):
        return None


def received_time(internaldate: str | None, body: bytes) -> datetime | None:
    """When the message arrived: the source's INTERNALDATE, else its Date header."""
    moment = parse_date_time(internaldate) if internaldate else None
    received = utc_seconds(moment)
    return received if received is not None else sent_time(body)


def expected_item(
    body: bytes, flags: Sequence[str], internaldate: str | None, key: str, *, deep: bool
) -> KeptItem:
    """What the target should keep of a source message."""
    content = content_of(body) if deep else None
    return KeptItem(
        key=key,
        received=received_time(internaldate, body),
        sent=sent_time(body),
        state=ImapState.from_flags(flags),
        headers=content.headers if content else None,
        bodies=content.bodies if content else None,
        attachments=content.attachments if content else None,
    )


def content_of(mime: bytes) -> Content:
    """The normalised headers, body texts and attachment digests of a message (never raises)."""
    message = message_from_bytes(mime)
    bodies: list[str] = []
    attachments: list[str] = []
    _walk(message, bodies, attachments)
    return Content(_kept_headers(message), tuple(bodies), tuple(sorted(attachments)))


def differences(expected: KeptItem, actual: KeptItem) -> list[str]:
    """Each field the target keeps otherwise than the source says, as ``field: source …, target …``.

    A field the source doesn't have (no Date header: no sent time) is not judged; deep fields are
    compared only when both sides carry them.
    """
    out: list[str] = []

    def judge(name: str, want: object, got: object) -> None:
        if want != got:
            out.append(f"{name}: source {_shown(want)}, target {_shown(got)}")

    if expected.key != actual.key:
        judge("key", expected.key, actual.key)
    if expected.received is not None:
        judge("received", expected.received, utc_seconds(actual.received))
    if expected.sent is not None:
        judge("sent", expected.sent, utc_seconds(actual.sent))
    want, got = expected.state, actual.state
    # Exchange keeps one last verb (PR_LAST_VERB_EXECUTED): a message both answered and forwarded
    # keeps "answered" (runners.connectors.exchange_props), so "forwarded" can't be judged then.
    judged = (
        ("read", "flagged", "answered", "draft")
        if want.answered
        else ("read", "flagged", "answered", "forwarded", "draft")
    )
    for field in judged:
        judge(field, getattr(want, field), getattr(got, field))
    judge("categories", {c.lower() for c in want.categories}, {c.lower() for c in got.categories})
    if expected.headers is not None and actual.headers is not None:
        theirs = dict(actual.headers)
        for name, value in expected.headers:
            judge(f"header {name}", value, theirs.get(name))
    if expected.bodies is not None and actual.bodies is not None:
        if sorted(expected.bodies) != sorted(actual.bodies):
            judge("body text", f"{len(expected.bodies)} part(s)", "other text")
    if expected.attachments is not None and actual.attachments is not None:
        missing = sorted(set(expected.attachments) - set(actual.attachments))
        extra = sorted(set(actual.attachments) - set(expected.attachments))
        if missing or extra or len(expected.attachments) != len(actual.attachments):
            out.append(
                f"attachments: {len(expected.attachments)} on the source, {len(actual.attachments)} on the "
                f"target; SHA-256 not on the target: {', '.join(d[:12] for d in missing) or 'none'}"
            )
    return out


def _shown(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, set):
        return "{" + ", ".join(sorted(value)) + "}"
    return "none" if value is None else str(value)


def _header_bytes(body: bytes, name: bytes) -> bytes | None:
    """One header's raw (unfolded) value from the header block, without parsing the message."""
    end = body.find(b"\r\n\r\n")
    if end < 0:
        end = body.find(b"\n\n")
    head = re.sub(rb"\r?\n[ \t]+", b" ", body if end < 0 else body[:end])
    for line in re.split(rb"\r?\n", head):
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == name:
            return value
    return None


def _kept_headers(message: Message) -> tuple[tuple[str, str], ...]:
    raw: dict[str, str] = {}
    # raw_items: the values as written (get() wraps 8-bit ones in a Header that loses the bytes).
    for field_name, field_value in message.raw_items():
        raw.setdefault(field_name.lower(), str(field_value))
    out: list[tuple[str, str]] = []
    for name in KEPT_HEADERS:
        value = raw.get(name)
        if value is None:
            continue
        # The parser keeps raw 8-bit bytes as surrogates: hand them back as bytes, which
        # decode_header_value reads as UTF-8 or a Windows code page.
        unfolded = re.sub(r"\r?\n[ \t]", " ", value).encode("utf-8", "surrogateescape")
        text = _SPACE.sub(" ", decode_header_value(unfolded)).strip()
        if name in _ADDRESS_HEADERS:
            text = ", ".join(sorted({addr.lower() for _, addr in getaddresses([text]) if addr}))
        elif name == "date":
            try:
                moment = utc_seconds(parsedate_to_datetime(text))
            except (TypeError, ValueError, IndexError):
                moment = None
            if moment is not None:
                text = _shown(moment)
        out.append((name, text))
    return tuple(out)


def _walk(part: Message, bodies: list[str], attachments: list[str]) -> None:
    if part.get_content_type() == "message/rfc822":
        nested = part.get_payload()
        inner = nested[0] if isinstance(nested, list) and nested else None
        if isinstance(inner, Message):
            attachments.append(_digest_of_message(inner))
        return
    if part.is_multipart():
        for child in part.get_payload():
            if isinstance(child, Message):
                _walk(child, bodies, attachments)
        return
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    is_attachment = part.get_content_disposition() == "attachment" or part.get_filename() is not None
    if (
        part.get_content_maintype() == "text"
        and part.get_content_subtype() in ("plain", "html")
        and not is_attachment
    ):
        bodies.append(_normal_text(data, part.get_content_charset()))
    else:
        attachments.append(hashlib.sha256(data).hexdigest())


def _digest_of_message(message: Message) -> str:
    bodies: list[str] = []
    attachments: list[str] = []
    _walk(message, bodies, attachments)
    parts = [repr(_kept_headers(message)), *sorted(bodies), *sorted(attachments)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _normal_text(data: bytes, charset: str | None) -> str:
    text = None
    for candidate in (charset, "utf-8", "windows-1252"):
        if not candidate:
            continue
        try:
            text = data.decode(candidate)
            break
        except (LookupError, UnicodeDecodeError):
            continue
    if text is None:
        text = data.decode("latin-1")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _TRAILING.sub("", text).rstrip("\n")

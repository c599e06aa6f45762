"""A message's display headers (Subject, From, Date, Message-ID) as readable text, whatever the bytes.

Pure functions, no I/O. Real mailboxes hold headers in raw 8-bit (UTF-8 or a Windows code page,
undeclared), RFC 2047 encoded words with unknown charsets or broken base64, words split in the middle
of a character, control characters, and no headers at all. None of that may raise: the worst case is
the text as written. The stdlib's ``email.header.decode_header`` raises on some of these and
``email.policy.default`` turns raw UTF-8 into replacement characters, so the decoding is done here,
word by word, with the stdlib's codecs and its quoted-printable/base64 decoders.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass

from runners.safe_text import visible

#: The fields fetched and shown, as IMAP's HEADER.FIELDS names them.
FIELDS = ("Subject", "From", "Date", "Message-ID")
#: A value longer than this is cut: a subject is a line, not a page.
MAX_VALUE_CHARS = 1000

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class MessageHeaders:
    """Display text of each field; None when the message has no such header."""

    subject: str | None
    sender: str | None  # From
    date: str | None
    message_id: str | None


def parse_headers(block: bytes) -> MessageHeaders:
    """The first Subject, From, Date and Message-ID of a header block (a whole message is fine too)."""
    end = _BLANK_LINE.search(block)
    head = _FOLD.sub(b"", block[: end.start()] if end else block)
    found: dict[str, bytes] = {}
    for line in re.split(rb"\r?\n", head):
        name, colon, value = line.partition(b":")
        key = name.strip().decode("ascii", "replace").lower()
        if colon and key not in found:
            found[key] = value
    values = [found.get(f.lower()) for f in FIELDS]
    subject, sender, date, message_id = (None if v is None else decode_header_value(v) for v in values)
    return MessageHeaders(subject, sender, date, message_id)


def decode_header_value(raw: bytes | str) -> str:
    """Readable text of one (unfolded) header value; never raises.

    Raw 8-bit bytes are read as UTF-8, else Windows-1252, else Latin-1. Encoded words are decoded in
    their charset; adjacent ones with the same charset are joined first (senders split characters
    across them); whitespace between encoded words is dropped (RFC 2047 section 6.2). A word that
    can't be decoded (bad base64, unknown charset, bytes invalid in it) stays as written.
    """
    text = visible(header_text(raw))  # controls shown, not obeyed: they could restyle a terminal
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def header_text(raw: bytes | str) -> str:
    """One (unfolded) header value as a target's field holds it: read as ``decode_header_value``
    reads it, but nothing shown differently nor cut (it is the message's data, not a display)."""
    text = from_8bit(raw) if isinstance(raw, bytes) else raw
    return " ".join(_decode_words(text).split())


def from_8bit(raw: bytes) -> str:
    """Raw header bytes as text: UTF-8, else Windows-1252, else Latin-1 (never fails)."""
    for charset in ("utf-8", "cp1252"):
        try:
            return raw.decode(charset)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")  # every byte is a character: never fails


def _decode_words(text: str) -> str:
    # Segments: plain text, or (charset, bytes, as written) of a decodable encoded word.
    segments: list[str | tuple[str, bytes, str]] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        pos = match.end()
        word = _word_bytes(match)
        if word is None:
            segments.append(between + match.group(0))
            continue
        previous = segments[-1] if segments else None
        if isinstance(previous, tuple) and not between.strip():
            between = ""  # only whitespace between two encoded words: it is not part of the text
            if previous[0] == word[0]:
                segments[-1] = (word[0], previous[1] + word[1], previous[2] + " " + match.group(0))
                continue
        if between:
            segments.append(between)
        segments.append((word[0], word[1], match.group(0)))
    segments.append(text[pos:])
    return "".join(s if isinstance(s, str) else _in_charset(*s) for s in segments)


def _word_bytes(match: re.Match[str]) -> tuple[str, bytes] | None:
    """(normalised charset, payload bytes) of an encoded word; None if its encoding is broken."""
    charset = match.group(1).partition("*")[0].lower()  # RFC 2231 language suffix: utf-8*en
    payload = match.group(3)
    try:
        if match.group(2) in "bB":
            data = payload.encode("ascii")
            return charset, base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
        return charset, binascii.a2b_qp(payload.encode("utf-8"), header=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def _in_charset(charset: str, data: bytes, written: str) -> str:
    try:
        codecs.lookup(charset)
        return data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return written  # unknown charset, or bytes that aren't text in it: show what the sender wrote

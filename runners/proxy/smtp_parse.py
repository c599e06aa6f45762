"""SMTP command lines, envelope paths and SASL responses, parsed from a client's bytes. Never raises.

Pure functions: whatever a client sends ends as a ``Command`` (maybe with an empty verb), a ``MailPath``
or None, so a listener's only failure mode on bad input is a protocol error reply. Text is decoded as
UTF-8 with ``surrogateescape``: the bytes of an address or a parameter reach the backend unchanged.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

#: RFC 5321 4.5.3.1.4 (512 with CRLF) plus room for SMTPUTF8 and extension parameters (RFC 1869: +2x512).
MAX_COMMAND_LINE = 2048
#: RFC 5321 4.5.3.1.3: a forward or reverse path is at most 256 octets.
MAX_PATH = 256

_VERB = re.compile(r"[A-Za-z]{1,16}")
_PARAM_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_NOT_IN_HELO = re.compile(r"[^A-Za-z0-9.:\[\]_-]")


@dataclass(slots=True)  # not frozen: made for every command, and a frozen __init__ costs 4 times more
class Command:
    """One command line: its verb in capitals ("" when the line has none) and the rest as written."""

    verb: str
    arg: str


@dataclass(frozen=True, slots=True)
class MailPath:
    """``FROM:<a@b> SIZE=10`` or ``TO:<c@d>``: the address ("" for the null sender) and the parameters."""

    address: str
    #: Keys in capitals; a parameter without ``=`` has the value None.
    params: dict[str, str | None] = field(default_factory=dict)
    #: The parameters as the client wrote them, to pass on to a backend.
    raw_params: str = ""


def decode(line: bytes) -> str:
    return line.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def parse_command(line: bytes) -> Command:
    """``b"MAIL FROM:<a@b>\\r\\n"`` → ``Command("MAIL", "FROM:<a@b>")``; garbage → an empty or unknown verb."""
    text = decode(line.rstrip(b"\r\n"))
    verb, _, arg = text.partition(" ")
    if not _VERB.fullmatch(verb):
        return Command("", text)
    return Command(verb.upper(), arg.strip(" "))


def helo_name(arg: str) -> str:
    """The EHLO/HELO argument as the proxy repeats it (to a backend, in a Received line): a domain or an
    address literal, anything else dropped, at most 255 characters."""
    words = arg.split()
    return (_NOT_IN_HELO.sub("", words[0])[:255] if words else "") or "unknown"


def parse_mail_path(arg: str, keyword: str) -> MailPath | None:
    """The path after ``keyword`` (``FROM`` or ``TO``) and its parameters; None when it isn't one.

    Lenient where senders are (a blank after the colon, a path without brackets), strict where it
    matters: no control characters, no blanks inside the path, at most 256 octets, one ``@`` that
    separates a non-empty local part from a domain.
    """
    head, colon, rest = arg.partition(":")
    if not colon or head.strip().upper() != keyword:
        return None
    rest = rest.lstrip(" ")
    if rest.startswith("<"):
        path, closed, params = rest[1:].partition(">")
        if not closed:
            return None
    else:
        path, _, params = rest.partition(" ")
    if _CONTROL.search(path) or " " in path or len(encode(path)) > MAX_PATH:
        return None
    path = _strip_source_route(path)
    if path and not _is_mailbox(path):
        return None
    if not path and keyword != "FROM":
        return None  # only the sender may be null
    parsed = _params(params)
    if parsed is None:
        return None
    return MailPath(address=path, params=parsed, raw_params=params.strip(" "))


def _strip_source_route(path: str) -> str:
    # RFC 5321 4.1.2: "@a,@b:user@c" is accepted and the route ignored.
    if path.startswith("@") and ":" in path:
        return path.partition(":")[2]
    return path


def _is_mailbox(path: str) -> bool:
    local, at, domain = path.rpartition("@")
    return bool(at and local and domain) and "@" not in domain and not domain.startswith(".")


def _params(text: str) -> dict[str, str | None] | None:
    out: dict[str, str | None] = {}
    for token in text.split():
        key, eq, value = token.partition("=")
        if not _PARAM_KEY.fullmatch(key) or _CONTROL.search(value) or (eq and not value):
            return None
        out[key.upper()] = value if eq else None
    return out


def size_param(path: MailPath) -> int | None:
    """The ``SIZE=`` a sender declared, or None when absent or not a number."""
    value = path.params.get("SIZE")
    if value is None or not value.isdigit() or len(value) > 15:
        return None
    return int(value)


def decode_b64_text(text: str) -> str | None:
    """A SASL response's base64 decoded to text (UTF-8), or None when it isn't base64 of UTF-8."""
    text = text.strip(" ")
    if not _B64.fullmatch(text) or len(text) % 4:
        return None
    try:
        # base64.b64decode(text, validate=True) without its wrapper (a login's AUTH decodes one or two)
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def decode_plain(text: str) -> tuple[str, str, str] | None:
    """``AUTH PLAIN``'s response (RFC 4616) → (authzid, authcid, password); None when malformed."""
    decoded = decode_b64_text(text)
    if decoded is None:
        return None
    parts = decoded.split("\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    return parts[0], parts[1], parts[2]


def encode_b64(text: str) -> str:
    return binascii.b2a_base64(text.encode("utf-8"), newline=False).decode("ascii")  # base64.b64encode's

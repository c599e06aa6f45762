"""Parsing of IMAP responses: tokens, response codes, UID sets and FETCH items.

A response is a list of parts: even indices are protocol text, odd indices are literal payloads,
so ``[b'* 1 FETCH (UID 7 BODY[] ', b'<message>', b')']``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

Token = bytes | str | int | None | list["Token"]

_CODE = re.compile(rb"^\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\] ?")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_IDATE = re.compile(rb'INTERNALDATE "([^"]*)"')
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_MODSEQ = re.compile(rb"MODSEQ \((\d+)\)")
#: A listing's FETCH in the shape Dovecot (and most servers) send: the items in the order asked,
#: MODSEQ last under CONDSTORE. One match instead of five searches, a message per listed message;
#: any other shape takes the searches. No "(" in the date, so the MODSEQ matched is the first one.
_META_LINE = re.compile(
    rb'\* \d+ FETCH \(UID (\d+) RFC822\.SIZE (\d+) FLAGS \(([^)]*)\) INTERNALDATE "([^"(]*)"(?: MODSEQ \((\d+)\))?\)\r\n'
)
_ATOM_END = b' ()[]{"\r\n'


def literal_at_end(line: bytes) -> tuple[int, bytes] | None:
    """Where a line's closing literal announcement (``{123}``, ``{123+}``, ``~{123}``) starts, and its
    digits; None when the line announces none. ``line`` ends with CRLF.

    What ``rb"~?\\{(\\d+)\\+?\\}\\r\\n$"`` finds, without a regular expression's search from each
    position: one per body of a FETCH, the copy's hottest line."""
    end = len(line) - 3
    if end < 2 or line[end:] != b"}\r\n":
        return None
    if line[end - 1] == 0x2B:  # "+": LITERAL+
        end -= 1
    brace = line.rfind(b"{", 0, end)
    if brace < 0:
        return None
    digits = line[brace + 1 : end]
    if not digits.isdigit():
        return None
    return (brace - 1 if brace and line[brace - 1] == 0x7E else brace), digits  # "~": a BINARY literal


def split_code(text: bytes) -> tuple[str | None, str, str]:
    """``b'[APPENDUID 5 7:9] Done'`` → ``("APPENDUID", "5 7:9", "[APPENDUID 5 7:9] Done")``."""
    decoded = text.decode("utf-8", "replace")
    m = _CODE.match(text)
    if not m:
        return None, "", decoded
    args = (m.group(2) or b"").decode("utf-8", "replace")
    return m.group(1).decode("ascii", "replace").upper(), args, decoded


def expand_uid_set(spec: str) -> list[int]:
    """``"5:7,9"`` → ``[5, 6, 7, 9]`` (ranges may be written high:low)."""
    out: list[int] = []
    for piece in spec.split(","):
        if ":" in piece:
            a, b = (int(x) for x in piece.split(":", 1))
            lo, hi = (a, b) if a <= b else (b, a)
            out.extend(range(lo, hi + 1))
        elif piece:
            out.append(int(piece))
    return out


def compress_uids(uids: Iterable[int]) -> bytes:
    """``[1, 2, 3, 7]`` → ``b"1:3,7"`` (sorted, for compact UID FETCH/STORE commands)."""
    ordered = sorted(set(uids))
    if not ordered:
        return b""
    pieces: list[bytes] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        pieces.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = uid
    pieces.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(pieces)


def fetch_meta(text: bytes) -> tuple[int | None, int | None, tuple[str, ...] | None, str | None, int | None]:
    """UID, RFC822.SIZE, FLAGS, INTERNALDATE and MODSEQ from one FETCH response's text."""
    line = _META_LINE.fullmatch(text)
    if line is not None:
        uid, size, flag_list, date, modseq = line.groups()
        return (
            int(uid),
            int(size),
            _flags(flag_list),
            date.decode("ascii", "replace"),
            None if modseq is None else int(modseq),
        )
    flags: tuple[str, ...] | None = None
    fm = _FLAGS.search(text)
    if fm:
        flags = _flags(fm.group(1))
        # Keywords are atoms, so "UID 5" can only be our item once FLAGS is cut out.
        text = text[: fm.start()] + text[fm.end() :]
    um = _UID.search(text)
    sm = _SIZE.search(text)
    dm = _IDATE.search(text)
    mm = _MODSEQ.search(text)
    return (
        int(um.group(1)) if um else None,
        int(sm.group(1)) if sm else None,
        flags,
        dm.group(1).decode("ascii", "replace") if dm else None,
        int(mm.group(1)) if mm else None,
    )


#: FLAGS lists up to this long are cached: a hostile server's megabyte-long lists are not kept.
_CACHED_FLAGS_BYTES = 256


def _flags(text: bytes) -> tuple[str, ...]:
    """The flags of a FETCH's FLAGS list, ``\\Recent`` left out (session-only, never copied).

    Short lists are cached: a folder's messages share a few (``\\Seen``, ``\\Seen \\Recent``, ...),
    and a listing parses one a message (12,000 calls a run of 12,000 messages, ~1 % of its CPU)."""
    return _short_flags(text) if len(text) <= _CACHED_FLAGS_BYTES else _parse_flags(text)


def _parse_flags(text: bytes) -> tuple[str, ...]:
    words = text.decode("utf-8", "replace").split()
    if b"recent" not in text.lower():  # the usual case: nothing to leave out, no pass over each word
        return tuple(words)
    return tuple(f for f in words if f.lower() != "\\recent")


_short_flags = lru_cache(maxsize=1024)(_parse_flags)


def fetch_uid(parts: list[bytes]) -> int | None:
    """The UID of a FETCH response split around its literal: servers put it before or after the body."""
    uid = _uid_in(parts[0])
    if uid is None and len(parts) > 2:
        uid = _uid_in(parts[2])
    return uid


def _uid_in(text: bytes) -> int | None:
    """``fetch_meta``'s UID, one search instead of five when no FLAGS (whose keywords could look
    like "UID 5") are in the text: the case of every body FETCH."""
    # find, not ``in``: bytes' ``in`` first tries the needle as an int, making and dropping a TypeError
    # (an exception's message formatted) on every call; ``find`` does not.
    if text.find(b"FLAGS (") >= 0:
        return fetch_meta(text)[0]
    um = _UID.search(text)
    return int(um.group(1)) if um else None


def tokens(parts: list[bytes]) -> list[Token]:
    """Tokenise a whole response (text and literals) into nested Python values.

    Atoms become ``str``, numbers ``int``, quoted strings and literals ``bytes``, NIL ``None`` and
    parenthesised lists ``list``. Used for LIST, STATUS, NAMESPACE: never on the FETCH hot path.
    """
    stack: list[list[Token]] = [[]]
    for index, part in enumerate(parts):
        if index % 2:
            stack[-1].append(part)
            continue
        _tokenise_text(part, stack)
    return stack[0]


def _tokenise_text(text: bytes, stack: list[list[Token]]) -> None:
    i, n = 0, len(text)
    while i < n:
        c = text[i : i + 1]
        if c in (b" ", b"\r", b"\n"):
            i += 1
        elif c in (b"(", b"["):
            new: list[Token] = []
            stack[-1].append(new)
            stack.append(new)
            i += 1
        elif c in (b")", b"]"):
            if len(stack) > 1:
                stack.pop()
            i += 1
        elif c == b'"':
            i, value = _quoted(text, i + 1)
            stack[-1].append(value)
        elif c in (b"{", b"~"):
            # The literal marker itself; its payload is the next part.
            end = text.find(b"}", i)
            i = n if end < 0 else end + 1
        else:
            j = i
            while j < n and text[j : j + 1] not in _ATOM_END:
                j += 1
            atom = text[i:j].decode("utf-8", "replace")
            if j == i:  # lone special character: skip it
                j += 1
            elif atom.isdigit():
                stack[-1].append(int(atom))
            elif atom.upper() == "NIL":
                stack[-1].append(None)
            else:
                stack[-1].append(atom)
            i = j


def _quoted(text: bytes, i: int) -> tuple[int, bytes]:
    out = bytearray()
    n = len(text)
    while i < n:
        c = text[i]
        if c == 0x5C and i + 1 < n:  # backslash escapes the next character
            out.append(text[i + 1])
            i += 2
        elif c == 0x22:
            return i + 1, bytes(out)
        else:
            out.append(c)
            i += 1
    return i, bytes(out)


def quote(value: str | bytes) -> bytes:
    """An IMAP quoted string for an ASCII value without CR/LF (caller uses a literal otherwise)."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def needs_literal(raw: bytes) -> bool:
    return any(b > 0x7E or b < 0x20 for b in raw)

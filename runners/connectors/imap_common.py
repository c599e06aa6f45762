"""LIST, NAMESPACE and STATUS, shared by the IMAP source and target."""

from __future__ import annotations

from collections.abc import Sequence

from runners.errors import CommandError
from runners.imap.codes import command_error
from runners.imap.parse import Token, tokens
from runners.imap.wire import ImapConnection, Reply
from runners.model import FolderState


def _text(token: Token) -> str:
    if isinstance(token, bytes):
        return token.decode("utf-8", "replace")
    return "" if token is None else str(token)


def namespace(conn: ImapConnection) -> tuple[str, str]:
    """Personal namespace ``(prefix, separator)``; falls back to ``LIST "" ""``."""
    if conn.has("NAMESPACE"):
        reply = conn.check(b"NAMESPACE", "NAMESPACE")
        for parts in reply.untagged:
            toks = tokens(parts)
            if len(toks) >= 3 and toks[1] == "NAMESPACE" and isinstance(toks[2], list) and toks[2]:
                first = toks[2][0]
                if isinstance(first, list) and len(first) >= 2:
                    return _text(first[0]), _text(first[1])
    reply = conn.check(b'LIST "" ""', "LIST")
    for parts in reply.untagged:
        toks = tokens(parts)
        if len(toks) >= 4 and toks[1] == "LIST":
            return "", _text(toks[3])
    return "", "/"


def list_folders(conn: ImapConnection) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """``(wire name, separator, attributes)`` of every folder, with special-use when available."""
    if conn.has("LIST-EXTENDED") and conn.has("SPECIAL-USE"):
        reply = conn.check(b'LIST "" "*" RETURN (SPECIAL-USE)', "LIST")
    else:
        reply = conn.check(b'LIST "" "*"', "LIST")
    out: list[tuple[str, str | None, tuple[str, ...]]] = []
    for parts in reply.untagged:
        toks = tokens(parts)
        if len(toks) < 5 or toks[1] != "LIST":
            continue
        attrs = tuple(_text(a) for a in toks[2]) if isinstance(toks[2], list) else ()
        sep = None if toks[3] is None else _text(toks[3])
        out.append((_text(toks[4]), sep, attrs))
    return out


def status_items(conn: ImapConnection) -> bytes:
    base = b"MESSAGES UIDNEXT UIDVALIDITY"
    return base + b" HIGHESTMODSEQ" if conn.has("CONDSTORE") else base


def parse_status(reply: Reply) -> FolderState:
    values: dict[str, int] = {}
    for parts in reply.untagged:
        toks = tokens(parts)
        if len(toks) >= 4 and toks[1] == "STATUS" and isinstance(toks[3], list):
            items = toks[3]
            for key, value in zip(items[::2], items[1::2], strict=False):
                if isinstance(value, int):
                    values[_text(key).upper()] = value
    return FolderState(
        uidvalidity=values.get("UIDVALIDITY", 0),
        uidnext=values.get("UIDNEXT", 0),
        messages=values.get("MESSAGES", 0),
        highestmodseq=values.get("HIGHESTMODSEQ"),
    )


def statuses(conn: ImapConnection, wire_names: Sequence[str]) -> list[FolderState | CommandError]:
    """STATUS of many folders in one round trip."""
    items = status_items(conn)
    commands = [
        (b"STATUS " + conn.astring(name) + b" (" + items + b")", f"STATUS {name}") for name in wire_names
    ]
    out: list[FolderState | CommandError] = []
    for (_, operation), reply in zip(commands, conn.pipeline(commands), strict=True):
        if reply.status == "OK":
            out.append(parse_status(reply))
        else:
            out.append(command_error(conn.server, operation, reply.text, reply.code, reply.status))
    return out


def select_state(reply: Reply, *, messages_hint: int = 0) -> FolderState:
    """UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ/EXISTS from a SELECT or EXAMINE reply."""
    values: dict[str, int] = {}
    exists = messages_hint
    for parts in reply.untagged:
        line = parts[0]
        if line.startswith(b"* OK ["):
            toks = tokens(parts)
            if len(toks) >= 3 and isinstance(toks[2], list) and len(toks[2]) >= 2:
                key, value = toks[2][0], toks[2][1]
                if isinstance(value, int):
                    values[_text(key).upper()] = value
        elif line.endswith(b" EXISTS\r\n"):
            exists = int(line.split()[1])
    return FolderState(
        uidvalidity=values.get("UIDVALIDITY", 0),
        uidnext=values.get("UIDNEXT", 0),
        messages=exists,
        highestmodseq=values.get("HIGHESTMODSEQ"),
    )

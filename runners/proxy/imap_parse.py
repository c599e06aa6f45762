"""The IMAP commands a client may send before login, split into tokens. Pure; raises only
``ImapSyntaxError`` (fuzz-tested: no input makes it raise anything else).

A command arrives as lines; a line that ends with a literal's announcement (``{12}`` or the
non-synchronizing ``{12+}``) is followed by that many bytes and then the rest of the command. Only
what a login needs is understood: atoms, quoted strings, literals, and parentheses (ID's list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LITERAL = re.compile(r"\{(\d{1,10})(\+?)\}$")
_CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F))
_SPECIAL = frozenset(' ()"') | _CONTROL


class ImapSyntaxError(ValueError):
    """The client's words are not IMAP."""


@dataclass(frozen=True, slots=True)
class LiteralAhead:
    size: int
    synchronizing: bool


def tokenize(line: str, tokens: list[str]) -> LiteralAhead | None:
    """Append the tokens of one line (without its CRLF) to ``tokens``; the literal it announces, if any."""
    # A line of atoms and spaces only (printable: no control character; no quote or parenthesis) is
    # what nearly every client's LOGIN is: its tokens are its words, split at once instead of a
    # character at a time. (str methods, not a pattern's fullmatch: 1.4 k instructions less a line.)
    if (
        line.isprintable()
        and '"' not in line
        and "(" not in line
        and ")" not in line
        and not line.endswith("}")
    ):
        tokens.extend(filter(None, line.split(" ")))
        return None
    literal = None
    if line.endswith("}") and (match := _LITERAL.search(line)) is not None:
        literal = LiteralAhead(int(match.group(1)), match.group(2) != "+")
        line = line[: match.start()]
        if line and not line.endswith(" ") and not line.endswith("("):
            raise ImapSyntaxError("a literal must start a token")
    position, end = 0, len(line)
    while position < end:
        char = line[position]
        if char == " ":
            position += 1
        elif char in "()":
            tokens.append(char)
            position += 1
        elif char == '"':
            position = _quoted(line, position + 1, tokens)
        elif char in _CONTROL:
            raise ImapSyntaxError("control character in a command")
        else:
            start = position
            while position < end and line[position] not in _SPECIAL:
                position += 1
            if position < end and line[position] == '"':
                raise ImapSyntaxError("quote inside an atom")
            tokens.append(line[start:position])
    return literal


def _quoted(line: str, position: int, tokens: list[str]) -> int:
    out: list[str] = []
    end = len(line)
    while position < end:
        char = line[position]
        if char == '"':
            tokens.append("".join(out))
            return position + 1
        if char == "\\":
            position += 1
            if position >= end or line[position] not in '"\\':
                raise ImapSyntaxError("bad escape in a quoted string")
            char = line[position]
        elif char in "\r\n\0":
            raise ImapSyntaxError("CR, LF or NUL in a quoted string")
        out.append(char)
        position += 1
    raise ImapSyntaxError("unterminated quoted string")


def valid_tag(tag: str) -> bool:
    """A tag is an atom without ``+`` (RFC 3501: tag = 1*<any ASTRING-CHAR except "+">)."""
    return bool(tag) and "+" not in tag and "{" not in tag and "*" not in tag and "%" not in tag


def quotable(text: str) -> bool:
    """Whether ``text`` can be sent as an IMAP quoted string (7-bit, no CR, LF or NUL)."""
    return text.isascii() and not any(c in text for c in "\r\n\0")


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

"""Map TOML keys to the line they are written on.

``tomllib`` returns plain dicts with no positions, but a plan error must name a line. This module
re-reads the (already valid) TOML text and records, for every key path, the 1-based line where it
is defined: table headers, dotted keys, keys inside inline tables and array elements.

A key path is a tuple: ``("folders", "rename", "Old/Path")`` or ``("mailboxes", "entries", 2)``.
"""

from __future__ import annotations

import tomllib

KeyPart = str | int
Key = tuple[KeyPart, ...]

_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_END = frozenset(",]}#\r\n")


class KeyLocator:
    """Line numbers of the keys in one TOML document."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Key, int] = {}
        try:
            _Scanner(text, self._lines).document()
        except _Stop:
            # Only reached on text tomllib did not accept; keep what was found so far.
            pass

    def line_of(self, key: Key) -> int | None:
        """Line of ``key``; for a key that isn't written, the line of its nearest written parent.

        So a missing ``target.host`` points at the ``[target]`` header, and a missing table gives None.
        """
        while key:
            line = self._lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return None


class _Stop(Exception):
    """The scanner met something it doesn't understand."""


class _Scanner:
    """A position-tracking TOML reader that keeps key paths and lines, never values."""

    def __init__(self, text: str, out: dict[Key, int]) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.out = out
        # Array-of-tables ([[a]]) element counts, so that later headers land on the right element.
        self.arrays: dict[Key, int] = {}

    # -- characters ---------------------------------------------------------------------------

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def advance(self, n: int = 1) -> None:
        chunk = self.text[self.pos : self.pos + n]
        if not chunk:
            raise _Stop
        self.line += chunk.count("\n")
        self.pos += len(chunk)

    def expect(self, token: str) -> None:
        if self.peek(len(token)) != token:
            raise _Stop
        self.advance(len(token))

    def skip_blanks(self) -> None:
        while self.peek() in (" ", "\t"):
            self.advance()

    def skip_blanks_comments_newlines(self) -> None:
        while True:
            c = self.peek()
            if c in (" ", "\t", "\r", "\n"):
                self.advance()
            elif c == "#":
                end = self.text.find("\n", self.pos)
                self.advance((len(self.text) if end < 0 else end) - self.pos)
            else:
                return

    # -- structure ----------------------------------------------------------------------------

    def document(self) -> None:
        table: Key = ()
        while True:
            self.skip_blanks_comments_newlines()
            if not self.peek():
                return
            if self.peek() == "[":
                table = self.header()
            else:
                self.keyval(table)

    def header(self) -> Key:
        line = self.line
        self.expect("[")
        is_array = self.peek() == "["
        if is_array:
            self.advance()
        self.skip_blanks()
        parts = self.key()
        self.skip_blanks()
        self.expect("]]" if is_array else "]")

        # [a.b] after [[a]] means "b of the last a element".
        resolved: list[KeyPart] = []
        for n, part in enumerate(parts):
            resolved.append(part)
            count = self.arrays.get(tuple(resolved))
            if count is not None and n < len(parts) - 1:
                resolved.append(count - 1)
        if is_array:
            array_key = tuple(resolved)
            index = self.arrays.get(array_key, 0)
            self.arrays[array_key] = index + 1
            resolved.append(index)
        key = tuple(resolved)
        self.record(key, line, parents_from=0)
        return key

    def keyval(self, prefix: Key) -> None:
        line = self.line
        key = prefix + tuple(self.key())
        self.record(key, line, parents_from=len(prefix) + 1)
        self.skip_blanks()
        self.expect("=")
        self.skip_blanks()
        self.value(key)

    def record(self, key: Key, line: int, parents_from: int) -> None:
        # Parents implied by a dotted key or header keep the line where they first appeared.
        for n in range(max(parents_from, 1), len(key)):
            self.out.setdefault(key[:n], line)
        self.out[key] = line

    def key(self) -> list[str]:
        parts = [self.simple_key()]
        while True:
            self.skip_blanks()
            if self.peek() != ".":
                return parts
            self.advance()
            self.skip_blanks()
            parts.append(self.simple_key())

    def simple_key(self) -> str:
        c = self.peek()
        if c == '"':
            start = self.pos
            self.skip_basic_string()
            # Let tomllib decode the escapes so the key matches what it returned.
            decoded = tomllib.loads("k = " + self.text[start : self.pos])["k"]
            return str(decoded)
        if c == "'":
            start = self.pos
            self.skip_literal_string()
            return self.text[start + 1 : self.pos - 1]
        start = self.pos
        while self.peek() and self.peek() in _BARE_KEY_CHARS:
            self.advance()
        if self.pos == start:
            raise _Stop
        return self.text[start : self.pos]

    def value(self, key: Key) -> None:
        c = self.peek()
        if c == "{":
            self.inline_table(key)
        elif c == "[":
            self.array(key)
        elif c == '"':
            self.skip_basic_string()
        elif c == "'":
            self.skip_literal_string()
        else:
            start = self.pos
            while self.peek() and self.peek() not in _SCALAR_END:
                self.advance()
            if self.pos == start:
                raise _Stop

    def inline_table(self, key: Key) -> None:
        self.expect("{")
        while True:
            self.skip_blanks_comments_newlines()
            if self.peek() == "}":
                self.advance()
                return
            self.keyval(key)
            self.skip_blanks_comments_newlines()
            if self.peek() == ",":
                self.advance()
            elif self.peek() != "}":
                raise _Stop

    def array(self, key: Key) -> None:
        self.expect("[")
        index = 0
        while True:
            self.skip_blanks_comments_newlines()
            if self.peek() == "]":
                self.advance()
                return
            element = (*key, index)
            self.out[element] = self.line
            self.value(element)
            index += 1
            self.skip_blanks_comments_newlines()
            if self.peek() == ",":
                self.advance()
            elif self.peek() != "]":
                raise _Stop

    # -- strings ------------------------------------------------------------------------------

    def skip_basic_string(self) -> None:
        multiline = self.peek(3) == '"""'
        self.advance(3 if multiline else 1)
        while True:
            c = self.peek()
            if not c or (c == "\n" and not multiline):
                raise _Stop
            if c == "\\":
                self.advance(2)
            elif multiline and self.peek(3) == '"""':
                self.advance(3)
                # Up to two quotes right before the closing ones belong to the content.
                for _ in range(2):
                    if self.peek() == '"':
                        self.advance()
                return
            elif c == '"' and not multiline:
                self.advance()
                return
            else:
                self.advance()

    def skip_literal_string(self) -> None:
        multiline = self.peek(3) == "'''"
        self.advance(3 if multiline else 1)
        closing = "'''" if multiline else "'"
        end = self.text.find(closing, self.pos)
        if end < 0 or (not multiline and "\n" in self.text[self.pos : end]):
            raise _Stop
        self.advance(end - self.pos + len(closing))
        if multiline:
            for _ in range(2):
                if self.peek() == "'":
                    self.advance()

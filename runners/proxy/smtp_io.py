"""Lines in, replies out: SMTP framing over asyncio streams, with the limits a proxy needs.

``read_line`` never buffers more than the stream's own limit for one line: an overlong line is read
through and reported as ``too_long`` with its bytes dropped, so a client can't grow the proxy's memory.
``discard_buffered`` drops what a peer sent ahead of a TLS handshake (the STARTTLS injection).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from runners.safe_text import safe

#: A backend's multi-line reply longer than this is not an SMTP server talking.
MAX_REPLY_LINES = 100
MAX_REPLY_LINE = 2048


@dataclass(slots=True)  # not frozen: made for every line read, and a frozen __init__ costs 4 times more
class Line:
    """One line as received, CR LF included (``b""`` when it was too long to keep). Not changed once made."""

    data: bytes
    too_long: bool = False

    @property
    def bare_newline(self) -> bool:
        """LF without CR before it, or a CR not followed by LF: the SMTP smuggling material."""
        body = self.data[:-2] if self.data.endswith(b"\r\n") else self.data.removesuffix(b"\n")
        return not self.data.endswith(b"\r\n") or b"\r" in body or b"\n" in body


async def read_line(reader: asyncio.StreamReader, limit: int) -> Line | None:
    """The next line ending in LF, or None at the end of the stream (a partial last line is dropped)."""
    total = 0
    while True:
        try:
            chunk = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            # No LF within the stream's buffer limit: consume what is there and keep looking.
            chunk = await reader.readexactly(max(1, exc.consumed))
            total += len(chunk)
            continue
        except asyncio.IncompleteReadError:
            return None
        except (ConnectionError, OSError):
            return None
        total += len(chunk)
        if total > limit:
            return Line(b"", too_long=True)
        return Line(chunk)


def discard_buffered(reader: asyncio.StreamReader) -> int:
    """Drop the bytes already received but not read; how many there were.

    After ``220 Ready to start TLS`` nothing sent in clear may count as said inside TLS
    (RFC 3207 5, CVE-2011-0411). asyncio keeps those bytes in the reader across ``start_tls``, and has
    no public call to drop them, so this reaches for the reader's buffer; a test pins the behaviour.
    """
    buffer = getattr(reader, "_buffer", None)
    if not isinstance(buffer, bytearray):
        return 0
    count = len(buffer)
    buffer.clear()
    return count


def reply(code: int, *lines: str) -> bytes:
    """``reply(250, "a", "b")`` → ``250-a\\r\\n250 b\\r\\n`` (each line made safe: one line, no controls)."""
    texts = [safe(line) for line in lines] or [""]
    out = [f"{code}-{text}\r\n" for text in texts[:-1]]
    out.append(f"{code} {texts[-1]}\r\n")
    return "".join(out).encode("utf-8")


async def send(writer: asyncio.StreamWriter, code: int, *lines: str) -> None:
    writer.write(reply(code, *lines))
    await writer.drain()


@dataclass(slots=True)  # not frozen: a frozen __init__ sets each field through object.__setattr__
class Reply:
    """A backend's reply: its code and the text of each line (without the code). Not changed once made."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400


class MalformedReply(Exception):
    """A backend sent something that is not an SMTP reply (or closed the connection)."""


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    """One (multi-line) reply. Raises ``MalformedReply``; a timeout is the caller's."""
    lines: list[str] = []
    while len(lines) < MAX_REPLY_LINES:
        line = await read_line(reader, MAX_REPLY_LINE)
        if line is None:
            raise MalformedReply("the connection closed")
        text = line.data.rstrip(b"\r\n").decode("utf-8", "replace")
        code, sep = text[:3], text[3:4]
        if line.too_long or not code.isdigit() or sep not in ("-", " ", ""):
            raise MalformedReply(f"not an SMTP reply: {safe(text[:80])}")
        lines.append(text[4:])
        if sep != "-":
            return Reply(int(code), tuple(lines))
    raise MalformedReply("a reply of more than 100 lines")

"""A message's text from a sending client, read to its final dot under the limits, into a sink.

The sink is the backend (streamed as it arrives, still dot-stuffed: both sides speak SMTP) or a spool
draft. ``receive_message`` checks every line: a text line over 1,000 octets (RFC 5321 4.5.3.1.6), a
bare CR or LF (SMTP smuggling material: only CR LF . CR LF ends a message here) or more than the
plan's ``max_message_bytes`` stops the copy; the rest is read and dropped so the refusal comes in step.
"""

from __future__ import annotations

import logging

from runners.proxy.smtp_backend import BackendSession
from runners.proxy.smtp_session import ClientConnection
from runners.proxy.spool import Draft
from runners.safe_text import safe

log = logging.getLogger(__name__)

#: RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CR LF.
MAX_TEXT_LINE = 1000


async def receive_message(conn: ClientConnection, sink: Sink, max_bytes: int) -> str | None:
    """Read the message up to its final dot into ``sink``; the first problem, or None.

    Problems: "gone" (the client left or went silent), "size", "line", "newline".
    """
    problem: str | None = None
    total = 0
    while True:
        line = await conn.read(MAX_TEXT_LINE)
        if line is None:
            return "gone"
        if line.data == b".\r\n":
            return problem
        if problem is not None:
            continue
        if line.too_long:
            problem = "line"
        elif line.bare_newline:
            problem = "newline"
        else:
            total += len(line.data)
            if total > max_bytes:
                problem = "size"
            else:
                await sink.put(line.data)


class Sink:
    """Where a message goes; ``broken`` once it can't take more (the backend left, the disk failed)."""

    broken = False

    async def put(self, data: bytes) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError


class BackendSink(Sink):
    """The message, streamed to a backend as it arrives (still dot-stuffed: both sides speak SMTP)."""

    def __init__(self, session: BackendSession) -> None:
        self.session = session

    def write(self, data: bytes) -> None:
        if not self.broken:
            self.session.writer.write(data)

    async def put(self, data: bytes) -> None:
        if self.broken:
            return
        writer = self.session.writer
        writer.write(data)
        if writer.transport.get_write_buffer_size() > 1 << 16:
            try:
                await writer.drain()
            except (OSError, ConnectionError):
                self.broken = True

    def abandon(self) -> None:
        """Drop the backend's connection before the final dot: it discards the partial message."""
        self.session.writer.transport.abort()


class SpoolSink(Sink):
    """The message, into a spool draft (``Draft.commit`` makes it durable)."""

    def __init__(self, draft: Draft) -> None:
        self.draft = draft

    def write(self, data: bytes) -> None:
        try:
            self.draft.write(data)
        except OSError as exc:
            log.error("spool write failed: %s", safe(exc))
            self.broken = True

    async def put(self, data: bytes) -> None:
        self.write(data)

"""A submission client's side of a session on the proxy's own connection protocol (``ClientConn``), not
asyncio's streams: the lines are taken from the protocol's buffer, and the session waits on one future
only when no whole line has arrived (no StreamReader, StreamWriter or their protocol made per session).

It behaves as ``smtp_session.ClientConnection`` does: the same line limits (an overlong line is read
through, its bytes dropped, and reported ``too_long``), read deadline and ``421``, STARTTLS that drops
what was pipelined in clear, and a writer that waits only for a client that reads nothing.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Final

from runners.proxy.client_conn import CLIENT_LIMIT, ClientConn, ClientGone
from runners.proxy.contracts import Leg
from runners.proxy.smtp_io import Line
from runners.proxy.smtp_parse import MAX_COMMAND_LINE
from runners.proxy.smtp_session import SmtpClient
from runners.safe_text import safe

log = logging.getLogger(__name__)

#: What ``_take`` says when no whole line has arrived yet (None: the client is gone).
_PENDING: Final = Line(b"")


class SubmissionConn(ClientConn):
    """``ClientConn`` that also tells when the transport's write buffer is full (``drained``)."""

    __slots__ = ("drained",)

    def __init__(self, loop: asyncio.AbstractEventLoop, on_connect: Callable[[ClientConn], None]) -> None:
        super().__init__(loop, on_connect)
        self.drained: asyncio.Future[None] | None = None  # set while the client reads nothing

    def pause_writing(self) -> None:
        if self.drained is None:
            self.drained = self.loop.create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.resume_writing()


class ConnClient(SmtpClient):
    """The client's side of one submission session, over a ``SubmissionConn``. Its maker sets ``task``
    (the session's, which its deadlines cancel) before the session first runs."""

    __slots__ = ("_skipping", "conn")

    def __init__(self, conn: SubmissionConn, *, tls: bool, timeout: float) -> None:
        peer = conn.transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        super().__init__(address, tls, timeout, conn.loop)
        self.conn = conn
        self._skipping = False  # inside a line longer than the buffer: its bytes are being dropped

    def _take(self, limit: int) -> Line | None:
        """The next line, ``_PENDING`` when none is whole yet, None when the client left before one."""
        conn = self.conn
        buffer = conn.buffer
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > CLIENT_LIMIT:  # no line end in sight: drop what came, keep looking
                self._skipping = True
                buffer.clear()
            return None if conn.ended else _PENDING
        data = bytes(buffer[: end + 1])
        del buffer[: end + 1]
        if conn.paused and len(buffer) <= CLIENT_LIMIT:
            conn.paused = False
            conn.transport.resume_reading()
        if self._skipping or len(data) > limit:
            self._skipping = False
            return Line(b"", too_long=True)
        return Line(data)

    async def read(self, limit: int = MAX_COMMAND_LINE) -> Line | None:
        line = self._take(limit)  # a line already here: no deadline to start and stop
        if line is not _PENDING:
            return line
        return await super().read(limit)

    async def _next_line(self, limit: int) -> Line | None:
        while (line := self._take(limit)) is _PENDING:
            await self.conn.wait()
        return line

    async def send_raw(self, data: bytes) -> None:
        conn = self.conn
        try:
            conn.transport.write(data)
        except OSError:  # the client left: the next read says so
            return
        # A reply is a few bytes the kernel takes at once: wait only for a client that reads nothing.
        if conn.drained is not None:
            await conn.drained

    async def starttls(self, context: ssl.SSLContext) -> bool:
        await self.send(220, "2.0.0 ready to start TLS")
        dropped = len(self.conn.buffer)  # ClientConn.start_tls drops them, before anything can slip in
        if dropped:
            log.info("dropped %d bytes a client at %s sent behind STARTTLS", dropped, safe(self.address))
        self._skipping = False
        try:
            async with asyncio.timeout(self.timeout):
                await self.conn.start_tls(context)
        except (OSError, TimeoutError, ClientGone) as exc:
            log.info("TLS handshake with %s failed: %s", safe(self.address), safe(exc))
            return False
        self.tls = True
        return True

    def leg(self) -> Leg:
        return self.conn.leg(self.tls, b"")

    async def close(self) -> None:
        if self.conn.lost:  # closed already: nothing to wait for
            self.conn.transport.close()
            return
        await super().close()

    def _start_close(self) -> None:
        self.conn.transport.close()

    async def _closed(self) -> None:
        await self.conn.close_waiter()

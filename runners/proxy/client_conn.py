"""An IMAP or POP3 client's connection before login: a small protocol that gathers the client's lines,
in place of asyncio's ``StreamReader`` and ``StreamWriter``.

A line already received is taken without a coroutine (``next_line``); only when none is there does the
session wait, on one future (``wait``) that data or the end wakes. While the session waits for a
command, the lines it would only answer (``quick``: POP3's ``USER`` and ``CAPA``) are answered in the
transport's callback, without waking the session's task. Once the client logged in, ``leg`` hands the
connection to the relay, with what the client sent behind its login.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Final

from runners.proxy.contracts import Leg

#: What one read may hold before login without a line end (asyncio's ``limit`` as the streams had it).
CLIENT_LIMIT: Final = 64 * 1024
#: Seconds a closing connection may take to send what was written before login, before it is cut.
CLOSE_SECONDS: Final = 10.0


class LineTooLong(Exception):
    """More than ``CLIENT_LIMIT`` bytes without a line end."""


class ClientGone(Exception):
    """The client closed its side (or the connection failed) before the line or bytes asked for."""


class ClientConn(asyncio.Protocol):
    """One client's connection. ``on_connect`` is given it once connected (it starts the session);
    ``quick``, set by the session, answers a line on the spot (True) or leaves it to the session."""

    __slots__ = ("buffer", "closed", "ended", "loop", "lost", "on_connect", "over_ssl", "paused", "quick",
                 "transport", "waiter", "wanted")  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop, on_connect: Callable[[ClientConn], None]) -> None:
        self.loop = loop
        self.on_connect = on_connect
        self.buffer = bytearray()
        self.transport: asyncio.Transport
        self.waiter: asyncio.Future[None] | None = None
        self.wanted = 0  # bytes the waiting session needs; 0: a line
        self.ended = False  # the client's end of file, or the connection lost
        self.lost = False
        self.paused = False
        self.over_ssl = False
        self.closed: asyncio.Future[None] | None = None  # made when someone waits for the close
        self.quick: Callable[[bytes], bool] | None = None

    # -- the transport's callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a connection's transport reads and writes
        self.over_ssl = transport.get_extra_info("sslcontext") is not None
        self.on_connect(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            if len(buffer) > 2 * CLIENT_LIMIT and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        if self.wanted:
            if len(buffer) >= self.wanted:
                waiter.set_result(None)
            return
        if b"\n" not in data and len(buffer) <= CLIENT_LIMIT:
            return
        quick = self.quick
        if quick is not None:
            # Lines the session would only answer are answered here; the first other line wakes it.
            while (end := buffer.find(b"\n")) >= 0:
                try:
                    if not quick(bytes(buffer[: end + 1])):
                        break
                except Exception:  # the session meets it again, in its task, and ends there
                    break
                del buffer[: end + 1]
            else:
                if len(buffer) <= CLIENT_LIMIT:
                    return
        waiter.set_result(None)

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return not self.over_ssl  # plain: half-open, the backend's answer may still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = self.lost = True
        self._wake()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- the session's side --------------------------------------------------------------------------

    def next_line(self) -> bytes | None:
        """The next line with its line end, or None when none has arrived yet. Raises ``LineTooLong``,
        or ``ClientGone`` when the client ended before a whole line."""
        buffer = self.buffer
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > CLIENT_LIMIT:
                raise LineTooLong
            if self.ended:
                raise ClientGone
            return None
        if end >= CLIENT_LIMIT:
            raise LineTooLong
        line = bytes(buffer[: end + 1])
        del buffer[: end + 1]
        if self.paused and len(buffer) <= CLIENT_LIMIT:
            self.paused = False
            self.transport.resume_reading()
        return line

    def take(self, size: int) -> bytes | None:
        """``size`` bytes, or None when fewer have arrived; ``ClientGone`` when they never will."""
        buffer = self.buffer
        if len(buffer) < size:
            if self.ended:
                raise ClientGone
            return None
        data = bytes(buffer[:size])
        del buffer[:size]
        if self.paused and len(buffer) <= CLIENT_LIMIT:
            self.paused = False
            self.transport.resume_reading()
        return data

    def wait(self, size: int = 0) -> asyncio.Future[None]:
        """A future done when more of what the session needs arrived (a line; ``size`` bytes) or the
        client ended: ask ``next_line`` or ``take`` again then."""
        self.wanted = size
        waiter = self.waiter = self.loop.create_future()
        if self.paused:  # the session needs what the client has not sent: read it
            self.paused = False
            self.transport.resume_reading()
        return waiter

    def close_waiter(self) -> asyncio.Future[None]:
        """Done once the connection is closed."""
        if self.closed is None:
            self.closed = self.loop.create_future()
            if self.lost:
                self.closed.set_result(None)
        return self.closed

    async def close(self) -> None:
        """Close the connection after what was written went out, and wait until it is closed: a
        client that reads nothing (a full window) has it cut after ``CLOSE_SECONDS``."""
        self.transport.close()
        if self.lost:
            return
        cut = self.loop.call_later(CLOSE_SECONDS, self._cut)
        try:
            await self.close_waiter()
        finally:
            cut.cancel()

    def _cut(self) -> None:
        """Drop the connection without flushing, and count it closed now: a transport a failed TLS
        handshake left behind never tells this protocol it was lost."""
        self.transport.abort()
        self.ended = self.lost = True
        self._wake()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """TLS on (the server's side), first discarding whatever the client sent before the handshake
        (the STARTTLS injection: commands pipelined in clear behind STARTTLS)."""
        self.buffer.clear()
        self.quick = None
        loop = self.loop
        # No await between the discard and start_tls pausing the transport: nothing can slip in between.
        try:
            transport = await loop.start_tls(self.transport, self, context, server_side=True)
        except BaseException:  # cancelled (the login deadline), timed out, refused: asyncio's loop
            self._cut()  # closes the transport without telling us, so a close() would wait forever
            raise
        if transport is None:  # the connection was closed during the handshake
            raise ClientGone
        self.transport = transport
        self.over_ssl = True

    def leg(self, tls: bool, farewell: bytes) -> Leg:
        """The connection for the relay. This protocol stays the transport's until the relay takes it
        over (``take_rest``: what the client sent behind its login, and its end of file if it came)."""
        self.quick = None
        return Leg(self.transport, tls, self.take_rest, self.wait_closed, farewell)

    def take_rest(self) -> tuple[bytes, bool]:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data, self.ended

    async def wait_closed(self) -> None:
        if not self.lost:
            await self.close_waiter()

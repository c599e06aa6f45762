"""What both SMTP listeners share: their dependencies, and the client's side of a session.

``SmtpProxy`` is everything a session needs from outside (router, backends, observers, settings, the
client TLS context, the relay). ``ClientConnection`` reads a client's command lines under the plan's
timeout and limits, answers, and upgrades to TLS without carrying anything sent in clear across.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from runners.plan.proxy_smtp_options import ProxySmtpSettings
from runners.proxy.contracts import Leg, LoginEvent, LoginObserver, Password, ProxyBackend, Relay, Router
from runners.proxy.deadlines import Deadlines
from runners.proxy.relay import relay
from runners.proxy.smtp_io import Line, discard_buffered, read_line, reply
from runners.proxy.smtp_parse import MAX_COMMAND_LINE
from runners.safe_text import safe

log = logging.getLogger(__name__)

#: Unknown or malformed commands in one session before the proxy hangs up (a client talking HTTP).
MAX_BAD_COMMANDS = 20


@dataclass(frozen=True, slots=True)
class SmtpProxy:
    """The SMTP listeners' dependencies, shared by every session."""

    router: Router
    backends: Mapping[str, ProxyBackend]
    settings: ProxySmtpSettings
    tls_context: ssl.SSLContext | None
    observers: Sequence[LoginObserver] = ()
    relay: Relay = relay
    #: Set to end every relayed submission session (the proxy is stopping).
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def tell_observers(self, event: LoginEvent, password: Password | None) -> None:
        """Every observer in turn (they are quick, as ``LoginObserver`` asks: no task each); one that
        raises is logged (without the event) and ignored."""
        for observer in self.observers:
            try:
                await observer.login_finished(event, password)
            except Exception as exc:
                log.warning("login observer %s failed: %s", type(observer).__name__, type(exc).__name__)


async def answer_hello(
    conn: SmtpClient, settings: ProxySmtpSettings, verb: str, extensions: Sequence[str] = ()
) -> None:
    """The 250 to HELO (the hostname) or EHLO (the hostname, what both listeners offer, then ``extensions``)."""
    await conn.send_raw(_hello(settings.hostname, settings.max_message_bytes, verb, tuple(extensions)))


# The same few answers all day: made once, not line by line per session (keyed by the plain values
# they are made of, cheaper to hash than the settings).
@functools.lru_cache(maxsize=32)
def _hello(hostname: str, max_message_bytes: int, verb: str, extensions: tuple[str, ...]) -> bytes:
    if verb == "HELO":
        return reply(250, hostname)
    common = ["PIPELINING", f"SIZE {max_message_bytes}", "8BITMIME", "ENHANCEDSTATUSCODES"]
    return reply(250, hostname, *common, *extensions)


def banner(settings: ProxySmtpSettings) -> bytes:
    """The 220 a client is greeted with."""
    return _banner(settings.hostname)


@functools.lru_cache(maxsize=32)
def _banner(hostname: str) -> bytes:
    return reply(220, f"{hostname} ESMTP cutover proxy")


class SmtpClient:
    """The client's side of one session, as the sessions use it: over asyncio's streams
    (``ClientConnection``) or over the proxy's own protocol (``smtp_client.ConnClient``)."""

    __slots__ = ("_read_deadline", "address", "bad_commands", "task", "timeout", "tls")

    def __init__(self, address: str, tls: bool, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.address = address
        self.tls = tls
        self.timeout = timeout
        self.task: asyncio.Task[None]  # the session's (its deadlines cancel it): set by the maker
        self.bad_commands = 0
        # The read deadline looked up once, not per read.
        self._read_deadline = deadlines(timeout, loop)

    async def read(self, limit: int = MAX_COMMAND_LINE) -> Line | None:
        """The next line; None when the client left or stayed silent past the timeout (421 sent)."""
        task, deadline = self.task, self._read_deadline
        deadline.start(task)
        try:
            return await self._next_line(limit)
        except asyncio.CancelledError:
            if not deadline.expired(task):
                raise
        finally:
            deadline.stop(task)
        await self.send(421, "4.4.2 idle too long, closing")
        return None

    async def _next_line(self, limit: int) -> Line | None:
        """The next line as it comes, however long it takes (``read`` keeps the time)."""
        raise NotImplementedError

    async def _closed(self) -> None:
        """Wait until the connection ``close`` started is closed (``close`` keeps the time)."""
        raise NotImplementedError

    async def send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    async def starttls(self, context: ssl.SSLContext) -> bool:
        """``220``, drop whatever was pipelined behind STARTTLS, handshake. False when the handshake failed."""
        raise NotImplementedError

    def leg(self) -> Leg:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection and wait for it, at most ``CLOSE_SECONDS``."""
        self._start_close()
        task = self.task
        deadline = deadlines(CLOSE_SECONDS, task.get_loop())
        deadline.start(task)
        try:
            await self._closed()
        except asyncio.CancelledError:
            deadline.expired(task)  # ours or not, a close that takes too long is left to the kernel
        except OSError:
            pass
        finally:
            deadline.stop(task)

    def _start_close(self) -> None:
        raise NotImplementedError

    async def send(self, code: int, *lines: str) -> None:
        await self.send_raw(reply(code, *lines))

    async def bad_command(self, code: int, text: str) -> bool:
        """Answer a malformed or unknown command; False once the client made too many of them (421 sent)."""
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_COMMANDS:
            await self.send(421, "4.7.0 too many errors, closing")
            return False
        await self.send(code, text)
        return True


class ClientConnection(SmtpClient):
    """The client's side of one session, over asyncio's streams (made inside the session's task)."""

    __slots__ = ("reader", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool, timeout: float
    ) -> None:
        peer = writer.get_extra_info("peername")
        task = asyncio.current_task()
        assert task is not None
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        super().__init__(address, tls, timeout, task.get_loop())
        self.task = task
        self.reader = reader
        self.writer = writer

    async def _next_line(self, limit: int) -> Line | None:
        return await read_line(self.reader, limit)

    async def send_raw(self, data: bytes) -> None:
        writer = self.writer
        try:
            writer.write(data)
            # A reply is a few bytes the kernel takes at once: wait only for a client that reads nothing.
            if writer.transport.get_write_buffer_size() > _WRITE_BUFFER:
                await writer.drain()
        except OSError:  # the client left (ConnectionError is one): the next read says so
            pass

    async def starttls(self, context: ssl.SSLContext) -> bool:
        await self.send(220, "2.0.0 ready to start TLS")
        dropped = discard_buffered(self.reader)
        if dropped:
            log.info("dropped %d bytes a client at %s sent behind STARTTLS", dropped, safe(self.address))
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.start_tls(context)
        except (OSError, TimeoutError, ConnectionError) as exc:
            log.info("TLS handshake with %s failed: %s", safe(self.address), safe(exc))
            return False
        self.tls = True
        return True

    def leg(self) -> Leg:
        return Leg.of_streams(self.reader, self.writer, self.tls)

    def _start_close(self) -> None:
        self.writer.close()

    async def _closed(self) -> None:
        await self.writer.wait_closed()


#: Bytes of replies a client may leave unread before the session waits for it to read.
_WRITE_BUFFER = 64 * 1024
#: How long a client's connection may take to close before the session lets it be.
CLOSE_SECONDS = 1.0
#: Per event loop (a proxy's, or each of a test's), the sessions' deadlines by length.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Deadlines]] = (
    weakref.WeakKeyDictionary()
)


def deadlines(seconds: float, loop: asyncio.AbstractEventLoop | None = None) -> Deadlines:
    """The deadlines of this length on ``loop`` (the running one by default): a client's reads and
    close, a backend's login (one timer each, not one per read or login)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    last = _last
    if loop is last.loop():
        by_length = last.by_length
    else:  # a weak dictionary's lookup makes a weak reference every time: once per loop here
        found_table = _by_loop.get(loop)
        by_length = _by_loop[loop] = {} if found_table is None else found_table
        last.loop, last.by_length = weakref.ref(loop), by_length
    found = by_length.get(seconds)
    if found is None:
        found = by_length[seconds] = Deadlines(seconds)
    return found


class _LastLoop:
    """The loop ``deadlines`` was last asked about (weakly: a finished test's loop may go) and its table."""

    __slots__ = ("by_length", "loop")

    def __init__(self) -> None:
        self.loop: Callable[[], asyncio.AbstractEventLoop | None] = lambda: None
        self.by_length: dict[float, Deadlines] = {}


_last = _LastLoop()

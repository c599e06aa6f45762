"""Connecting to a backend: TCP, implicit TLS or STARTTLS verified against the backend's name (plain
only to loopback backends: the plan refuses anything else), all within a short deadline so that a
backend that is down or slow is answered at once (``NO [UNAVAILABLE]``, ``-ERR [SYS/TEMP]``) rather
than after the client's own retries.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Final, Protocol

from runners.connectors.tls import client_context
from runners.proxy.contracts import BackendEndpoint, Leg, TlsMode
from runners.safe_text import safe

#: A backend's lines and literals during login are short; the relay reads by chunks, not lines.
BACKEND_LIMIT = 256 * 1024


class BackendUnavailable(Exception):
    """The backend could not be reached or spoke nonsense; ``detail`` says which, in words."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BackendTls:
    """One verified client context per (verification, CA file), made once and shared by all sessions."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}

    def context(self, endpoint: BackendEndpoint) -> ssl.SSLContext:
        key = (endpoint.tls_verify, endpoint.ca_file)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = client_context(endpoint.ca_file, endpoint.tls_verify)
        return context


async def open_backend(
    endpoint: BackendEndpoint, tls: BackendTls
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``endpoint`` (TLS already on for implicit TLS). Raises ``BackendUnavailable``."""
    implicit = endpoint.tls == TlsMode.IMPLICIT
    try:
        return await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=tls.context(endpoint) if implicit else None,
            server_hostname=endpoint.host if implicit else None,
            limit=BACKEND_LIMIT,
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BackendUnavailable(f"{where(endpoint)}: {_words(exc)}") from None


class LineSteps(Protocol):
    """A backend's login dialogue as a state machine: ``step`` is given each line the backend sends
    (its line end stripped), writes what comes next with ``write``, and says when the dialogue is over.
    It raises (``BackendUnavailable``, ``ValueError``) when the backend speaks nonsense."""

    write: Callable[[bytes], None]

    def step(self, line: bytes) -> bool: ...


def unconnected(data: bytes) -> None:
    """A ``LineSteps``'s ``write`` until its connection is made."""
    raise RuntimeError("a backend dialogue wrote before its connection was made")


class _Spent:
    """The steps of a dialogue that is over (a ``LineSteps`` that takes no more lines)."""

    def __init__(self) -> None:
        self.write: Callable[[bytes], None] = unconnected

    def step(self, line: bytes) -> bool:
        raise RuntimeError("a finished backend dialogue was given a line")


_SPENT: Final = _Spent()


async def _dialogue(endpoint: BackendEndpoint, tls: BackendTls, steps: LineSteps) -> _DialogueProtocol:
    """Connect and run ``steps`` to their end; the connection is closed if they (or it) fail."""
    # The loop looked up once: each lookup is a getpid() system call (asyncio's check for a fork).
    loop = asyncio.get_running_loop()
    protocol = _DialogueProtocol(steps, loop.create_future())
    try:
        await _connect(loop, endpoint, tls, protocol)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BackendUnavailable(f"{where(endpoint)}: {_words(exc)}") from None
    try:
        await protocol.done
    except BaseException:  # nonsense, a close, the deadline: the connection is of no further use
        protocol.transport.abort()
        raise
    return protocol


async def open_dialogue(
    endpoint: BackendEndpoint, tls: BackendTls, steps: LineSteps
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``endpoint`` (plain or implicit TLS) whose login dialogue ``steps`` runs in the
    transport's callbacks, one wait for the whole exchange instead of one per line; then the connection
    as streams, holding whatever the backend sent after the dialogue's last line. Raises
    ``BackendUnavailable`` when it can't connect, or what ``steps`` raised; the connection is closed then."""
    return (await _dialogue(endpoint, tls, steps)).streams()


async def open_leg(endpoint: BackendEndpoint, tls: BackendTls, steps: LineSteps) -> Leg:
    """``open_dialogue`` for the relay: the connection as a ``Leg``, its reading paused until the relay
    takes the transport over (no streams made for it)."""
    protocol = await _dialogue(endpoint, tls, steps)
    if endpoint.tls == TlsMode.IMPLICIT:
        # The full streams: uvloop's TLS transport, told of the peer's close while its reading is
        # paused, drops what it decrypted but had not delivered (a BYE right behind the OK).
        return Leg.of_streams(*protocol.streams(), tls=True)
    return protocol.leg()


def _connect(
    loop: asyncio.AbstractEventLoop, endpoint: BackendEndpoint, tls: BackendTls, protocol: _DialogueProtocol
) -> Awaitable[object]:
    """The loop's connection of ``protocol`` to ``endpoint`` (its coroutine: no frame of ours to resume)."""
    implicit = endpoint.tls == TlsMode.IMPLICIT
    return loop.create_connection(
        lambda: protocol,
        endpoint.host,
        endpoint.port,
        ssl=tls.context(endpoint) if implicit else None,
        server_hostname=endpoint.host if implicit else None,
    )


async def backend_line(reader: asyncio.StreamReader) -> bytes:
    """The backend's next line, its line end stripped."""
    return (await reader.readuntil(b"\n")).rstrip(b"\r\n")


async def run_steps(reader: asyncio.StreamReader, steps: LineSteps) -> None:
    """The same dialogue over streams (a backend reached with STARTTLS, which the streams negotiated;
    ``steps.write`` is the streams' writer's)."""
    while not steps.step(await backend_line(reader)):
        pass


#: A STARTTLS backend's greeting and upgrade, then its login steps begun: given the endpoint, the
#: backends' TLS contexts, the steps, and the connection's streams. A module's function, not a
#: closure: a session whose backend is plain (most) makes none.
StartTls = Callable[
    [BackendEndpoint, "BackendTls", LineSteps, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]


def login_dialogue(
    endpoint: BackendEndpoint, tls: BackendTls, steps: LineSteps, starttls: StartTls
) -> Coroutine[None, None, Leg]:
    """A backend's login dialogue ``steps`` on a new connection to ``endpoint``: in the transport's
    callbacks (``open_leg``); on a STARTTLS endpoint over the streams, once ``starttls`` has read
    the greeting, upgraded the connection and begun the steps. The connection is closed when it fails;
    else it is the relay's ``Leg``. Without STARTTLS it is ``open_leg``'s coroutine itself (no frame of
    its own to resume)."""
    if endpoint.tls != TlsMode.STARTTLS:
        return open_leg(endpoint, tls, steps)
    return _starttls_dialogue(endpoint, tls, steps, starttls)


async def _starttls_dialogue(
    endpoint: BackendEndpoint, tls: BackendTls, steps: LineSteps, starttls: StartTls
) -> Leg:
    reader, writer = await open_backend(endpoint, tls)
    try:
        steps.write = writer.write
        await starttls(endpoint, tls, steps, reader, writer)
        await run_steps(reader, steps)
    except BaseException:
        writer.close()  # no wait: a cancelled login must not wait for the backend
        raise
    return Leg.of_streams(reader, writer, tls=True)


class _DialogueProtocol(asyncio.Protocol):
    """Feeds a backend's lines to a ``LineSteps``; reading stops with the dialogue's last line. It stays
    the transport's protocol under the streams it hands over (``streams``), which only the relay reads."""

    __slots__ = ("buffer", "closed", "done", "lost", "steps", "transport")

    def __init__(self, steps: LineSteps, done: asyncio.Future[None]) -> None:
        self.steps = steps
        self.done = done
        self.buffer = bytearray()
        self.transport: asyncio.Transport
        self.closed: asyncio.Future[None] | None = None  # what the relay's wait_closed() waits on
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream's transport reads and writes
        self.steps.write = self.transport.write

    def data_received(self, data: bytes) -> None:
        # Lines are cut from ``data`` itself: a backend's line nearly always comes whole, alone in its
        # segment, so the buffer holds only a line's start, or what follows the dialogue's last line.
        buffer = self.buffer
        if buffer:
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        done = self.done
        start = 0
        while not done.done():
            end = data.find(b"\n", start)
            if end < 0:
                if len(data) - start > BACKEND_LIMIT:
                    self._fail(ValueError("the backend's line is too long"))
                    return
                break
            line = data[start:end].rstrip(b"\r\n")
            start = end + 1
            try:
                over = self.steps.step(line)
            except Exception as exc:  # the backend spoke nonsense: the waiting login gets it
                self._fail(exc)
                return
            if over:
                self.transport.pause_reading()  # what follows is the relay's
                done.set_result(None)
        if start < len(data):
            buffer += data[start:] if start else data

    def eof_received(self) -> bool:
        self._fail(asyncio.IncompleteReadError(bytes(self.buffer), None))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():  # else nothing waits: no error to make (every session ends here)
            self._fail(exc if exc is not None else asyncio.IncompleteReadError(bytes(self.buffer), None))
        self.lost = True
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connection handed over to streams, as ``open_connection`` makes them."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=BACKEND_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = self.transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.buffer:
            reader.feed_data(bytes(self.buffer))
        transport.resume_reading()
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def leg(self) -> Leg:
        """The connection for the relay alone: what the backend sent after the dialogue's last line
        (``take_rest``) and the transport. Reading stays paused and this protocol stays the
        transport's: the relay takes the transport over (its own protocol) and resumes reading, so
        nothing is read in between."""
        self.steps = _SPENT  # this protocol lives as long as the session: not the login's password
        return Leg(self.transport, False, self.take_rest, self.wait_closed)

    def take_rest(self) -> tuple[bytes, bool]:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data, False  # reading was paused: an end of file, if any, is still to be read

    async def wait_closed(self) -> None:
        if self.lost:
            return
        if self.closed is None:
            self.closed = asyncio.get_running_loop().create_future()
        await self.closed


async def start_tls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext, host: str | None
) -> None:
    """Turn TLS on over a connection, first discarding whatever the peer sent before the handshake
    (the STARTTLS injection: commands or responses pipelined in clear behind the STARTTLS exchange)."""
    await writer.drain()
    # No await between here and start_tls pausing the transport: nothing can slip in between.
    discard_buffered(reader)
    await writer.start_tls(context, server_hostname=host)


def discard_buffered(reader: asyncio.StreamReader) -> int:
    """Drop the bytes ``reader`` holds unread; how many there were. StreamReader has no public way."""
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    count = len(buffer)
    buffer.clear()
    return count


def where(endpoint: BackendEndpoint) -> str:
    return f"{endpoint.host}:{endpoint.port}"


def _words(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return safe(exc.strerror)
    return safe(exc) or type(exc).__name__

"""The transparent pipe between a client and its backend once the backend accepted the login.

Every session starts by **copying**: each transport gets a small protocol that writes what it
receives straight into the other transport (reads of up to 256 KB), with the transports' own flow
control (a full write buffer pauses reading on the other side). The bytes a leg had already
read ahead go first. Most sessions are short exchanges, and this costs them least: no descriptor is
duplicated, nothing is registered anew with the loop.

On **plain legs** (no TLS; Linux) the first bulk read, 64 KB or more at once (a FETCH, an APPEND),
hands the session over to **splice**: reading stops on both legs, both write buffers drain, the
sockets are taken out of the transports (a duplicate of each descriptor; the transports are closed)
and the kernel moves the data socket -> pipe -> socket with ``os.splice``, driven by the loop's
``add_reader``/``add_writer``; the bulk never enters Python. Short reads after that are still
copied (one ``recv``, one ``send``), so a direction gets its pipe only when bulk flows in it.
FETCH on loopback: 0.35 CPU-s per GB spliced against 0.75 copied (bench/proxy_bench.py). TLS legs
stay with the copy: the bytes must pass through the TLS library anyway.

An in-kernel relay (a sockhash map with an sk_skb verdict program redirecting each socket's data to
its peer's egress) was measured on Linux 6.18 and left out: it moved about half what a splice relay
moves (333–499 MB/s against 677–1,144, alternated in the same runs) at about twice the machine's CPU
per GB, as each redirected segment is sent on by a kernel worker; and bytes a socket held before it
entered the map wait there until more arrive. ``bytes_by_path`` tells which path carried what.

No task or buffer is kept per direction: an idle session is a few small objects and the ``relay``
coroutine waiting on one future (plus one watcher task per distinct ``stop`` event, shared by the
sessions that share the event). The listeners call ``relay`` and know nothing of how the bytes move.

Closing: an end of file from one side is passed on as a half-close (``shutdown(SHUT_WR)``) after
everything before it was delivered, and the other direction goes on until it ends too (on TLS legs,
which cannot half-close, the session ends with the first end of file, after flushing). A reset or
another error ends both at once; so does ``stop`` (a switch's grace period ran out). ``relay`` returns
only when every descriptor of the session is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import socket
from typing import Final

from runners.proxy.contracts import Leg, RelayResult

#: Bytes one splice may move, and the capacity asked of each pipe (the kernel's default is 64 KB).
#: FETCH on loopback: 0.45 CPU-s per GB with 64 KB pipes, 0.40 with 256 KB, 0.35 with 1 MB. A pipe's
#: pages are only held while data sits in it.
_PIPE_SIZE: Final = 1024 * 1024
#: Reads smaller than this are copied; the first read that fills it moves the direction to splice.
_COPY_CHUNK: Final = 64 * 1024
#: Rounds of read-then-write per wake-up before the loop serves other sessions.
_ROUNDS: Final = 8
#: A transport's write buffer above this pauses reading on the other leg (protocols mode).
_WRITE_HIGH: Final = 512 * 1024
#: After a normal end, how long a peer that reads nothing may hold the last bytes before it is cut.
_FLUSH_SECONDS: Final = 30.0

_CAN_SPLICE: Final = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
_SPLICE_FLAGS: Final = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _CAN_SPLICE else 0

#: Bytes this process relayed, by the way they moved: "copy" (through Python) or "splice" (kernel only).
_moved: Final = {"copy": 0, "splice": 0}


def bytes_by_path() -> dict[str, int]:
    """Bytes relayed in this process so far, by path ("copy", "splice"): which one carried a transfer."""
    return dict(_moved)


async def relay(client: Leg, backend: Leg, stop: asyncio.Event) -> RelayResult:
    """Pipe both ways until both sides closed, one failed, or ``stop`` is set; then close both legs."""
    if stop.is_set() or client.transport.is_closing() or backend.transport.is_closing():
        return await _end_at_once(client, backend, "proxy" if stop.is_set() else None)
    # The loop looked up once: each lookup is a getpid() system call (asyncio's check for a fork).
    session = _ProtocolSession.start(client, backend, asyncio.get_running_loop())
    _watch(stop, session)
    try:
        await session.done
    except asyncio.CancelledError:
        session.finish("proxy", abort=True)
        raise
    finally:
        _unwatch(stop, session)
        await session.closed()
    return session.result()


class _Session:
    """What ``relay`` waits on, whichever way the bytes move."""

    __slots__ = ("done", "down_bytes", "ended_by", "up_bytes")

    def __init__(self, done: asyncio.Future[None] | None = None) -> None:
        self.done = done or asyncio.get_running_loop().create_future()
        self.ended_by: str | None = None
        self.up_bytes = 0  # client -> backend
        self.down_bytes = 0  # backend -> client

    def finish(self, ended_by: str, *, abort: bool) -> None:
        raise NotImplementedError

    async def closed(self) -> None:
        raise NotImplementedError

    def result(self) -> RelayResult:
        return RelayResult(self.up_bytes, self.down_bytes, self.ended_by or "error")

    def _resolve(self, ended_by: str) -> bool:
        """Record who ended the session; False when it had already ended."""
        if self.ended_by is None:
            self.ended_by = ended_by
        if self.done.done():
            return False
        self.done.set_result(None)
        return True


# --- splice: plain legs once bulk flows, the kernel moves the bytes ----------------------------------


class _Direction:
    """One direction of a spliced session: ``src`` socket -> pipe -> ``dst`` socket."""

    __slots__ = (
        "dst",
        "ended",
        "eof",
        "in_pipe",
        "pending",
        "pipe_r",
        "pipe_w",
        "session",
        "side",
        "src",
        "total",
        "waiting",
    )

    def __init__(self, session: _SpliceSession, side: str, src: socket.socket, dst: socket.socket) -> None:
        self.session = session
        self.side = side  # who sends: "client" or "backend"
        self.src = src
        self.dst = dst
        self.pending = b""  # bytes read but not yet sent (read ahead of the relay, or copied)
        self.pipe_r = self.pipe_w = -1
        self.in_pipe = 0
        self.total = 0
        self.eof = False
        self.ended = False
        self.waiting = ""  # "r": for src to be readable, "w": for dst to be writable, "": neither

    def pump(self) -> None:
        try:
            self._move()
        except OSError as exc:
            self.session.failed(self, exc)

    def _move(self) -> None:
        for _ in range(_ROUNDS):
            if not self._flush():
                self._wait("w")
                return
            if self.eof:
                self._wait("")
                with contextlib.suppress(OSError):  # the peer may be gone already
                    self.dst.shutdown(socket.SHUT_WR)
                self.ended = True
                self.session.direction_ended(self)
                return
            if self.pipe_r < 0:
                # Until one read fills a whole chunk, copy: a command or a short answer costs a recv and
                # a send, no pipe. Bulk (a FETCH, an APPEND) switches the direction to splice for good.
                try:
                    data = self.src.recv(_COPY_CHUNK)
                except BlockingIOError:
                    self._wait("r")
                    return
                if not data:
                    self.eof = True
                elif len(data) == _COPY_CHUNK:
                    self._open_pipe()
                self.pending = data
                continue
            try:
                moved = os.splice(self.src.fileno(), self.pipe_w, _PIPE_SIZE, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                if self.in_pipe:  # the pipe is full: empty it, then read again
                    continue
                self._wait("r")
                return
            if moved == 0:
                self.eof = True
            self.in_pipe += moved
        # More may be waiting; let other sessions run first. Unsent bytes need the writer's turn.
        self._wait("w" if self.in_pipe or self.pending else "r")

    def _flush(self) -> bool:
        """Send what is pending and what the pipe holds; False when ``dst`` can take no more now."""
        while self.pending:
            try:
                sent = self.dst.send(self.pending)
            except BlockingIOError:
                return False
            self.pending = self.pending[sent:]
            self.total += sent
            _moved["copy"] += sent
        while self.in_pipe:
            try:
                sent = os.splice(self.pipe_r, self.dst.fileno(), self.in_pipe, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                return False
            if sent <= 0:
                raise BrokenPipeError("splice wrote nothing")
            self.in_pipe -= sent
            self.total += sent
            _moved["splice"] += sent
        return True

    def _open_pipe(self) -> None:
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # over the user's pipe budget: the default size works too
            fcntl.fcntl(self.pipe_w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)

    def _wait(self, what: str) -> None:
        if what == self.waiting:
            return
        loop = self.session.loop
        if self.waiting == "r":
            loop.remove_reader(self.src.fileno())
        elif self.waiting == "w":
            loop.remove_writer(self.dst.fileno())
        if what == "r":
            loop.add_reader(self.src.fileno(), self.pump)
        elif what == "w":
            loop.add_writer(self.dst.fileno(), self.pump)
        self.waiting = what

    def close(self) -> None:
        self._wait("")
        for fd in (self.pipe_r, self.pipe_w):
            if fd >= 0:
                os.close(fd)
        self.pipe_r = self.pipe_w = -1


class _SpliceSession(_Session):
    __slots__ = ("backend", "client", "down", "legs", "loop", "up")

    def __init__(
        self,
        legs: tuple[Leg, Leg],
        client: socket.socket,
        backend: socket.socket,
        done: asyncio.Future[None],
    ) -> None:
        super().__init__(done)
        self.loop = asyncio.get_running_loop()
        self.legs = legs
        self.client = client
        self.backend = backend
        self.up = _Direction(self, "client", client, backend)
        self.down = _Direction(self, "backend", backend, client)

    def direction_ended(self, direction: _Direction) -> None:
        self._count()
        if self.ended_by is None:
            self.ended_by = direction.side
        if self.up.ended and self.down.ended:
            self.finish(direction.side, abort=False)

    def failed(self, direction: _Direction, error: OSError) -> None:
        # A reset is read from the sender; a broken pipe is met writing to the receiver.
        if isinstance(error, ConnectionResetError):
            self.finish(direction.side, abort=True)
        elif isinstance(error, BrokenPipeError):
            self.finish("backend" if direction.side == "client" else "client", abort=True)
        else:
            self.finish("error", abort=True)

    def finish(self, ended_by: str, *, abort: bool) -> None:
        if self.client.fileno() < 0:
            return
        self._count()
        for direction in (self.up, self.down):
            direction.close()
        farewell = self.legs[0].farewell
        if ended_by == "proxy" and farewell:  # the legs' transports are closed: say it on the socket
            with contextlib.suppress(OSError):
                self.client.send(farewell)
        for sock in (self.client, self.backend):
            sock.close()
        self._resolve(ended_by)

    def _count(self) -> None:
        self.up_bytes = self.up.total
        self.down_bytes = self.down.total

    async def closed(self) -> None:
        self.finish(self.ended_by or "proxy", abort=True)
        for leg in self.legs:  # the transports' own descriptors close on the loop's next turn
            with contextlib.suppress(Exception):
                await leg.wait_closed()


def _splicable(leg: Leg) -> bool:
    transport = leg.transport
    if leg.tls or transport.get_extra_info("ssl_object") is not None:
        return False
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.type == socket.SOCK_STREAM


def _own_socket(transport: asyncio.BaseTransport) -> socket.socket:
    """A socket of our own on the transport's connection: a duplicate descriptor, which keeps the
    connection open once the transport is closed."""
    sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
    sock.setblocking(False)
    return sock


# --- copy: every session starts here; TLS legs stay -------------------------------------------------


class _LegProtocol(asyncio.Protocol):
    """Takes one leg's transport over from its protocol and hands what it reads to the other leg."""

    __slots__ = ("original", "peer", "plain", "session", "side", "up")

    def __init__(self, session: _ProtocolSession, side: str, leg: Leg, peer: asyncio.Transport) -> None:
        self.session = session
        self.side = side
        self.up = side == "client"  # its bytes go to the backend
        self.peer = peer  # the other leg's transport: where this one's bytes go
        self.plain = not leg.tls  # a plain leg can pass its end of file on as a half-close
        self.original = leg.transport.get_protocol()  # told of the end, so wait_closed() returns

    def data_received(self, data: bytes) -> None:
        # The copy itself, kept here (no call of the session's) unless the read is bulk.
        self.peer.write(data)
        size = len(data)
        _moved["copy"] += size
        session = self.session
        if self.up:
            session.up_bytes += size
        else:
            session.down_bytes += size
        if size >= _COPY_CHUNK and not session.upgrading and session.may_splice():
            session.upgrade()

    def eof_received(self) -> bool:
        return self.session.eof(self)

    def pause_writing(self) -> None:
        if not self.session.upgrading:
            self.peer.pause_reading()  # the leg that fills this one's buffer

    def resume_writing(self) -> None:
        if self.session.upgrading:
            self.session.try_upgrade()  # a buffer emptied: perhaps both are now
        else:
            self.peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session.spliced is None:  # once spliced, the transport closing is ours
            self.session.lost(self.side, exc)
        self.original.connection_lost(exc)


class _ProtocolSession(_Session):
    """Every session starts here: the transports copy, which costs least for the short exchanges of
    most sessions. On plain legs the first bulk read (64 KB or more at once) hands the session over
    to splice: reading stops on both legs, the write buffers drain, the sockets are taken over."""

    __slots__ = ("all_lost", "backend", "client", "eofs", "legs", "lost_count", "splice_ok", "spliced",
                 "transports", "upgrading")  # fmt: skip

    def __init__(self, client: Leg, backend: Leg, done: asyncio.Future[None]) -> None:
        super().__init__(done)
        self.legs = (client, backend)
        self.client = client.transport
        self.backend = backend.transport
        self.transports = (self.client, self.backend)
        self.eofs = 0  # legs whose end of file came
        self.lost_count = 0  # legs whose connection is lost
        #: Made only when ``closed`` must wait for a leg still open (most sessions: both lost by then).
        self.all_lost: asyncio.Future[None] | None = None
        #: None until the first bulk read asks (``_may_splice``): most sessions never have one, and
        #: looking at the sockets costs each session more than its relay's copying.
        self.splice_ok: bool | None = None if _CAN_SPLICE else False
        self.upgrading = False
        self.spliced: _SpliceSession | None = None

    @classmethod
    def start(cls, client: Leg, backend: Leg, loop: asyncio.AbstractEventLoop) -> _ProtocolSession:
        session = cls(client, backend, loop.create_future())
        # Nothing below suspends: the legs' protocols see no more data once they are swapped.
        up = _LegProtocol(session, "client", client, session.backend)
        down = _LegProtocol(session, "backend", backend, session.client)
        session.client.set_protocol(up)
        session.backend.set_protocol(down)
        session.client.set_write_buffer_limits(high=_WRITE_HIGH)
        session.backend.set_write_buffer_limits(high=_WRITE_HIGH)
        # A leg that already met its end of file (a client that sent LOGOUT and half-closed
        # right behind its login) will not be told again: pass it on ourselves.
        up_rest, up_eof = client.take_rest()
        down_rest, down_eof = backend.take_rest()
        if up_rest or down_rest or up_eof or down_eof:
            # Both legs' read-ahead goes out before anything is spliced: no upgrade until it has.
            splice_ok, session.splice_ok = session.splice_ok, False
            if up_rest:
                session.forward(up, up_rest)
            if down_rest:
                session.forward(down, down_rest)
            if up_eof:
                session.eof(up)
            if down_eof:
                session.eof(down)
            session.splice_ok = False if session.eofs else splice_ok
            if max(len(up_rest), len(down_rest)) >= _COPY_CHUNK and session.may_splice():
                session.upgrade()
                return session
        session.client.resume_reading()
        session.backend.resume_reading()
        return session

    def forward(self, protocol: _LegProtocol, data: bytes) -> None:
        protocol.peer.write(data)
        _moved["copy"] += len(data)
        if protocol.up:
            self.up_bytes += len(data)
        else:
            self.down_bytes += len(data)
        if len(data) >= _COPY_CHUNK and not self.upgrading and self.may_splice():
            self.upgrade()

    def may_splice(self) -> bool:
        """Whether both legs are plain sockets the kernel can splice (asked once, at the first bulk read)."""
        if self.splice_ok is None:
            self.splice_ok = _splicable(self.legs[0]) and _splicable(self.legs[1])
        return self.splice_ok

    def upgrade(self) -> None:
        self.upgrading = True
        for transport in self.transports:
            transport.pause_reading()
            transport.set_write_buffer_limits(high=0)  # resume_writing() once it is empty
        self.try_upgrade()

    def try_upgrade(self) -> None:
        """Hand over to splice once both write buffers are empty (the bytes already copied go first)."""
        if self.spliced is not None or any(t.get_write_buffer_size() for t in self.transports):
            return
        if self.eofs or self.done.done():  # a half-closed or ending session stays as it is
            self.upgrading = self.splice_ok = False
            for transport in self.transports:
                transport.set_write_buffer_limits(high=_WRITE_HIGH)
                transport.resume_reading()
            return
        client, backend = (_own_socket(t) for t in self.transports)
        spliced = _SpliceSession(self.legs, client, backend, self.done)
        spliced.up.total, spliced.down.total = self.up_bytes, self.down_bytes
        self.spliced = spliced
        for transport in self.transports:
            transport.close()  # its socket closes on the loop's next turn; our duplicates go on
        spliced.up.pump()
        spliced.down.pump()

    def result(self) -> RelayResult:
        return super().result() if self.spliced is None else self.spliced.result()

    def eof(self, protocol: _LegProtocol) -> bool:
        self.eofs += 1
        if self.ended_by is None:
            self.ended_by = protocol.side
        peer = protocol.peer
        if protocol.plain and self.eofs < 2 and peer.can_write_eof():
            peer.write_eof()  # half-close: the other direction goes on
            return True
        self.finish(protocol.side, abort=False)
        return False

    def lost(self, side: str, exc: Exception | None) -> None:
        self.lost_count += 1
        if self.lost_count == 2 and self.all_lost is not None and not self.all_lost.done():
            self.all_lost.set_result(None)
        if exc is None and self.done.done():
            return  # finished already: both transports are closing (or aborted); nothing to add
        failed = exc is not None and not isinstance(exc, ConnectionError)
        self.finish("error" if failed else side, abort=exc is not None)

    def finish(self, ended_by: str, *, abort: bool) -> None:
        if self.spliced is not None:
            self.spliced.finish(ended_by, abort=abort)
            return
        for transport in self.transports:
            if abort:
                transport.abort()
            elif not transport.is_closing():
                transport.close()  # after its buffer went out
        # Resolved after the closes: their connection_lost (called soon, in order) comes before the
        # relay's task wakes, so it finds both legs closed and need not wait again.
        self._resolve(ended_by)

    async def closed(self) -> None:
        if self.spliced is not None:
            await self.spliced.closed()
            return
        if not self.done.done():
            self.finish("proxy", abort=True)
        if self.lost_count == 2:
            return
        loop = self.done.get_loop()
        self.all_lost = loop.create_future()
        # A peer that reads nothing must not hold the session forever; a timer, not a task per session.
        cut = loop.call_later(_FLUSH_SECONDS, functools.partial(self.finish, "proxy", abort=True))
        try:
            await self.all_lost
        finally:
            cut.cancel()


# --- the stop event: one watcher per event, however many sessions share it ------------------------
#
# A watcher outlives its last session: the registry's events are one per (backend, wave), so the
# watchers are few, and a session alone in its group (a quiet hour, one client after another) would
# otherwise start a task and cancel it again (36 k of the 584 k instructions of such a session). A
# watcher ends when its event is set (the registry sets its groups' events when the proxy stops and
# when a group's grace period after a switch runs out) or its loop cancels it; the map forgets it then.


class _StopWatch:
    __slots__ = ("sessions", "task")

    def __init__(self, stop: asyncio.Event) -> None:
        self.sessions: set[_Session] = set()
        self.task = asyncio.get_running_loop().create_task(self._wait(stop))
        self.task.add_done_callback(functools.partial(_forget, stop, self))

    async def _wait(self, stop: asyncio.Event) -> None:
        await stop.wait()
        for session in list(self.sessions):
            session.finish("proxy", abort=True)


_watches: dict[asyncio.Event, _StopWatch] = {}


def _forget(stop: asyncio.Event, watch: _StopWatch, _task: object) -> None:
    if _watches.get(stop) is watch:
        del _watches[stop]


def _watch(stop: asyncio.Event, session: _Session) -> None:
    watch = _watches.get(stop)
    if watch is None or watch.task.done():
        watch = _watches[stop] = _StopWatch(stop)
    watch.sessions.add(session)


def _unwatch(stop: asyncio.Event, session: _Session) -> None:
    watch = _watches.get(stop)
    if watch is None:
        return
    watch.sessions.discard(session)


# --- a session that is over before it started ------------------------------------------------------


def _is_over(leg: Leg) -> bool:
    return leg.transport.is_closing()


async def _end_at_once(client: Leg, backend: Leg, ended_by: str | None) -> RelayResult:
    """One leg closed (or ``stop`` set) before the relay began: pass on what was read, then close both."""
    counts = {}
    for source, sink in ((client, backend), (backend, client)):
        rest = b"" if ended_by else source.take_rest()[0]
        if rest and not sink.transport.is_closing():
            sink.transport.write(rest)
            _moved["copy"] += len(rest)
        counts[id(source)] = len(rest)
    if ended_by is None:
        ended_by = "client" if _is_over(client) else "backend"
    for leg in (client, backend):
        leg.transport.close()
    for leg in (client, backend):
        with contextlib.suppress(Exception):
            await leg.wait_closed()
    return RelayResult(counts[id(client)], counts[id(backend)], ended_by)

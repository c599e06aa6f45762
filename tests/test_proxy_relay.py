"""The relay between a logged-in client and its backend, over real loopback sockets.

A rig of three parts in one event loop: a backend server, a "proxy" that does a one-line login
exchange with both sides (so bytes sent right behind the login stay buffered in the streams, as they
do behind a real LOGIN) and then calls ``relay``, and clients. Plain legs take the splice path, a
TLS leg the protocols path; both are held to the same behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers.tlsca import ThrowawayCA

from runners.proxy import relay as relay_module
from runners.proxy.contracts import Leg, RelayResult
from runners.proxy.relay import relay

GREETING = b"* OK backend ready\r\n"
LOGIN = b"a1 LOGIN alice secret\r\n"
#: Sent in the same segment as the greeting / the login: the proxy's streams read them ahead.
BACKEND_AHEAD = b"* 1 EXISTS\r\n"
CLIENT_AHEAD = b"a2 SELECT INBOX\r\n"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = ThrowawayCA(Path(tmp_path_factory.mktemp("relay-ca")))
    leaf = ca.issue("proxy", days=30)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(leaf.cert, leaf.key)
    client = ssl.create_default_context(cafile=str(ca.ca_file))
    return Tls(server, client)


@dataclass
class Rig:
    port: int
    results: asyncio.Queue[RelayResult]
    stop: asyncio.Event
    client_ssl: ssl.SSLContext | None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A client past its login: the greeting read, the login and a pipelined command sent."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.client_ssl)
        assert await reader.readexactly(len(GREETING)) == GREETING
        writer.write(LOGIN + CLIENT_AHEAD)
        return reader, writer


@contextlib.asynccontextmanager
async def rig(
    backend: Handler, *, tls: Tls | None = None, client_tls: bool = False, backend_tls: bool = False
) -> AsyncIterator[Rig]:
    stop = asyncio.Event()
    results: asyncio.Queue[RelayResult] = asyncio.Queue()

    async def serve_backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING + BACKEND_AHEAD)
        assert await reader.readexactly(len(LOGIN)) == LOGIN
        try:
            await backend(reader, writer)
        finally:
            writer.close()

    backend_server = await asyncio.start_server(
        serve_backend, "127.0.0.1", 0, ssl=tls.server if tls and backend_tls else None
    )
    backend_port = backend_server.sockets[0].getsockname()[1]

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        b_reader, b_writer = await asyncio.open_connection(
            "127.0.0.1", backend_port, ssl=tls.client if tls and backend_tls else None
        )
        writer.write(await b_reader.readexactly(len(GREETING)))
        b_writer.write(await reader.readexactly(len(LOGIN)))
        await asyncio.sleep(0.05)  # let the ahead bytes land in the streams' buffers
        result = await relay(
            Leg.of_streams(reader, writer, client_tls), Leg.of_streams(b_reader, b_writer, backend_tls), stop
        )
        results.put_nowait(result)

    proxy_server = await asyncio.start_server(
        proxy, "127.0.0.1", 0, ssl=tls.server if tls and client_tls else None
    )
    try:
        yield Rig(
            proxy_server.sockets[0].getsockname()[1],
            results,
            stop,
            tls.client if tls and client_tls else None,
        )
    finally:
        proxy_server.close()
        backend_server.close()
        await proxy_server.wait_closed()
        await backend_server.wait_closed()


#: (client leg TLS, backend leg TLS): plain legs copy, then splice once bulk flows; a TLS leg only copies.
LEGS = [
    pytest.param(False, False, id="plain"),
    pytest.param(True, False, id="tls-client"),
    pytest.param(False, True, id="tls-backend"),
]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def collector_held() -> Iterator[None]:
    """Around a count of this process's descriptors before and after some sessions: what earlier tests
    left to the garbage collector is collected first, and no collection runs until the last count.

    The count is the whole process's. A SQLite connection sits in a reference cycle (with its statement
    cache), so a store an earlier test left open closes its database, WAL and shared-memory files only
    when the collector next runs. Under xdist other tests run first in the process; a collection that
    fell between the two counts took those descriptors out of the second for good, and the comparison
    failed after its deadline (behind tests/test_proxy_journal.py's locked-store test: 6 failures in
    12 runs with the collector run more often, 3 in 3 with it run right after the first count, for
    this test and the cancelled-relay one alike; 0 alone). Held, the collector
    cannot close a session's socket on the relay's behalf either: one only a collection closes counts.
    """
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run(coro: Awaitable[None]) -> None:
    async def main() -> None:
        await coro

    asyncio.run(main())


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 60)


@pytest.mark.parametrize(("client_tls", "backend_tls"), LEGS)
def test_a_large_transfer_both_ways_arrives_byte_for_byte(
    tls: Tls, client_tls: bool, backend_tls: bool
) -> None:
    down = os.urandom(24 * 1024 * 1024 + 17)  # backend -> client, as a FETCH of big messages
    up = os.urandom(6 * 1024 * 1024 + 5)  # client -> backend, as an APPEND

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send() -> None:
            for start in range(0, len(down), 1 << 20):
                writer.write(down[start : start + (1 << 20)])
                await writer.drain()

        sender = asyncio.create_task(send())
        got = await reader.readexactly(len(CLIENT_AHEAD) + len(up))
        await sender
        writer.write(hashlib.sha256(got).digest())
        await writer.drain()

    async def main() -> None:
        async with rig(backend, tls=tls, client_tls=client_tls, backend_tls=backend_tls) as r:
            reader, writer = await r.connect()
            writer.write(up)
            received = await read_all(reader)
            writer.close()
            result = await asyncio.wait_for(r.results.get(), 60)
        assert received[: len(BACKEND_AHEAD)] == BACKEND_AHEAD
        assert received[len(BACKEND_AHEAD) : -32] == down
        assert received[-32:] == hashlib.sha256(CLIENT_AHEAD + up).digest()
        assert result == RelayResult(len(CLIENT_AHEAD) + len(up), len(received), "backend")

    run(main())


@pytest.mark.parametrize(("client_tls", "backend_tls"), LEGS)
def test_short_exchanges_before_and_after_a_bulk_answer_stay_in_order(
    tls: Tls, client_tls: bool, backend_tls: bool
) -> None:
    bulk = os.urandom(5 * 1024 * 1024)  # on plain legs the session moves to splice here

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(CLIENT_AHEAD))
        while line := await reader.readline():
            if line == b"f1 FETCH\r\n":
                writer.write(b"* 1 FETCH {%d}\r\n" % len(bulk) + bulk + b"\r\nf1 OK\r\n")
            else:
                writer.write(line.split(b" ")[0] + b" OK done\r\n")
            await writer.drain()

    async def main() -> None:
        async with rig(backend, tls=tls, client_tls=client_tls, backend_tls=backend_tls) as r:
            reader, writer = await r.connect()
            assert await reader.readexactly(len(BACKEND_AHEAD)) == BACKEND_AHEAD
            for n in range(3):
                writer.write(b"n%d NOOP\r\n" % n)
                assert await reader.readline() == b"n%d OK done\r\n" % n
            writer.write(b"f1 FETCH\r\n")
            assert await reader.readline() == b"* 1 FETCH {%d}\r\n" % len(bulk)
            assert await reader.readexactly(len(bulk)) == bulk
            assert await reader.readline() == b"\r\n"
            assert await reader.readline() == b"f1 OK\r\n"
            for n in range(3):
                writer.write(b"m%d NOOP\r\n" % n)
                assert await reader.readline() == b"m%d OK done\r\n" % n
            writer.close()
            result = await asyncio.wait_for(r.results.get(), 30)
        assert result.ended_by == "client"
        assert result.client_to_backend == len(CLIENT_AHEAD) + 6 * len(b"n0 NOOP\r\n") + len(b"f1 FETCH\r\n")

    run(main())


@pytest.mark.parametrize(("client_tls", "backend_tls"), LEGS)
def test_a_client_half_close_still_gets_the_backends_last_words(
    tls: Tls, client_tls: bool, backend_tls: bool
) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rest = await reader.read()  # up to the client's end of file
        writer.write(b"* BYE after " + str(len(rest)).encode() + b" bytes\r\n")
        await writer.drain()

    async def main() -> None:
        async with rig(backend, tls=tls, client_tls=client_tls, backend_tls=backend_tls) as r:
            reader, writer = await r.connect()
            writer.write(b"a3 LOGOUT\r\n")
            await writer.drain()
            if client_tls or backend_tls:  # TLS cannot half-close: the session ends at the client's end
                if not client_tls:
                    writer.write_eof()
                    assert await read_all(reader) == BACKEND_AHEAD
                writer.close()
                result = await asyncio.wait_for(r.results.get(), 30)
                assert result.ended_by == "client"
                return
            writer.write_eof()
            received = await read_all(reader)
            writer.close()
            result = await asyncio.wait_for(r.results.get(), 30)
        sent = len(CLIENT_AHEAD) + len(b"a3 LOGOUT\r\n")
        assert received == BACKEND_AHEAD + b"* BYE after " + str(sent).encode() + b" bytes\r\n"
        assert result == RelayResult(sent, len(received), "client")

    run(main())


@pytest.mark.parametrize(("client_tls", "backend_tls"), LEGS)
def test_a_backend_that_hangs_up_ends_the_session(tls: Tls, client_tls: bool, backend_tls: bool) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(CLIENT_AHEAD))
        writer.write(b"* BYE shutting down\r\n")

    async def main() -> None:
        async with rig(backend, tls=tls, client_tls=client_tls, backend_tls=backend_tls) as r:
            reader, writer = await r.connect()
            received = await read_all(reader)
            writer.close()
            result = await asyncio.wait_for(r.results.get(), 30)
        assert received == BACKEND_AHEAD + b"* BYE shutting down\r\n"
        assert result.ended_by == "backend"
        assert result.client_to_backend == len(CLIENT_AHEAD)

    run(main())


@pytest.mark.parametrize(("client_tls", "backend_tls"), LEGS)
def test_the_stop_event_ends_every_session_that_shares_it(
    tls: Tls, client_tls: bool, backend_tls: bool
) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # idle until the proxy closes

    async def main() -> None:
        tasks_before = len(asyncio.all_tasks())
        async with rig(backend, tls=tls, client_tls=client_tls, backend_tls=backend_tls) as r:
            clients = [await r.connect() for _ in range(3)]
            for _reader, writer in clients:
                await writer.drain()
            await asyncio.sleep(0.1)  # every session is in its relay
            r.stop.set()
            results = [await asyncio.wait_for(r.results.get(), 30) for _ in clients]
            for reader, writer in clients:
                assert await read_all(reader) == BACKEND_AHEAD
                writer.close()
        assert [res.ended_by for res in results] == ["proxy"] * 3
        await asyncio.sleep(0.1)
        assert len(asyncio.all_tasks()) == tasks_before  # no watcher or copier task left behind

    run(main())


def test_a_client_reset_ends_the_session(tls: Tls) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()

    async def main() -> None:
        async with rig(backend) as r:
            _reader, writer = await r.connect()
            await asyncio.sleep(0.1)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST
            result = await asyncio.wait_for(r.results.get(), 30)
        assert result.ended_by == "client"

    run(main())


def test_a_relay_that_is_cancelled_closes_both_legs() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> None:
        async with rig(backend) as r:
            with collector_held():
                # With the rig's listeners open (uvloop also keeps a spare descriptor).
                before = open_fds()
                reader, writer = await r.connect()
                await asyncio.sleep(0.1)
                relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in relays:
                    task.cancel()
                assert await read_all(reader) == BACKEND_AHEAD  # the client sees its connection end
                writer.close()
                await writer.wait_closed()
                await asyncio.sleep(0.1)
                assert open_fds() == before

    run(main())


def test_no_descriptor_is_left_open_after_many_sessions_of_every_kind(tls: Tls) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        while line:
            writer.write(line.upper())
            await writer.drain()
            if line.startswith(b"BYE"):
                return
            line = await reader.readline()

    async def one(r: Rig, ending: str) -> None:
        reader, writer = await r.connect()
        writer.write((b"x" * 998 + b"\r\n") * 100)
        await reader.readexactly(len(BACKEND_AHEAD) + len(CLIENT_AHEAD) + 100_000)
        if ending == "client":
            writer.close()
        elif ending == "backend":
            writer.write(b"BYE\r\n")
            await read_all(reader)
            writer.close()
        await r.results.get()
        await writer.wait_closed()

    async def main() -> None:
        for client_tls, backend_tls in ((False, False), (True, False), (False, True)):
            async with rig(backend, tls=tls, client_tls=client_tls, backend_tls=backend_tls) as r:
                with collector_held():
                    before = open_fds()
                    for _ in range(5):
                        await asyncio.gather(one(r, "client"), one(r, "backend"))
                    # Closing ends in the loop's own time (a TLS close, the test backend's handler
                    # returning), later on a busy machine: wait for it up to a deadline, then compare.
                    deadline = asyncio.get_running_loop().time() + 5.0
                    while open_fds() != before and asyncio.get_running_loop().time() < deadline:
                        await asyncio.sleep(0.05)
                    assert open_fds() == before

    run(main())


def test_a_stop_set_before_the_relay_closes_both_at_once() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> None:
        async with rig(backend) as r:
            r.stop.set()
            reader, writer = await r.connect()
            assert await read_all(reader) == b""
            writer.close()
            result = await asyncio.wait_for(r.results.get(), 30)
        assert result == RelayResult(0, 0, "proxy")

    run(main())


def test_a_stop_watcher_is_forgotten_when_its_loop_ends() -> None:
    """A watcher outlives its last session; the proxy's loop ending (or its event set) ends it, and
    the map of watchers must let it go then, or every test's loop would leave one behind."""

    class Session:
        def finish(self, ended_by: str, *, abort: bool) -> None: ...

    events: list[asyncio.Event] = []

    async def main() -> None:
        unset_one, set_one = asyncio.Event(), asyncio.Event()
        events.extend((unset_one, set_one))
        relay_module._watch(unset_one, Session())  # type: ignore[arg-type]
        relay_module._watch(set_one, Session())  # type: ignore[arg-type]
        set_one.set()
        await asyncio.sleep(0.05)
        assert set_one not in relay_module._watches
        assert unset_one in relay_module._watches

    run(main())
    # Only this test's events: a worker process runs other tests' loops before this one.
    assert not any(event in relay_module._watches for event in events)

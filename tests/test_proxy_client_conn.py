"""The proxy's client connection before login (``runners.proxy.client_conn``) where a session ends
badly: its task must always end, on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from servers.tlsca import ThrowawayCA

from runners.proxy import client_conn
from runners.proxy.client_conn import ClientConn

Session = Callable[[ClientConn], Awaitable[None]]


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    leaf = ThrowawayCA(Path(tmp_path_factory.mktemp("client-conn-ca"))).issue("proxy", days=30)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    return context


def run_on(loop_name: str, main: Callable[[], Awaitable[None]]) -> None:
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())


async def one_session(session: Session, client: Callable[[int], Awaitable[socket.socket]]) -> float:
    """Serve one connection with ``session`` (its task, as the proxy makes it) and return how long
    the task took to end; ``client`` connects and does its part."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    server = await loop.create_server(
        lambda: ClientConn(loop, lambda conn: tasks.append(loop.create_task(session(conn)))), "127.0.0.1", 0
    )
    sock = await client(server.sockets[0].getsockname()[1])
    try:
        started = loop.time()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return loop.time() - started
    finally:
        sock.close()
        server.close()


async def connect(port: int, *, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    await asyncio.sleep(0.1)  # the session is running
    return sock


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_handshake_cut_short_by_the_login_deadline_still_closes(
    loop_name: str, server_tls: ssl.SSLContext
) -> None:
    """A client that says STARTTLS and then nothing: the login deadline cancels the session in its
    handshake, and the session's close must not wait forever (asyncio's loop closes the transport
    without telling the protocol)."""

    async def session(conn: ClientConn) -> None:
        try:
            await asyncio.wait_for(conn.start_tls(server_tls), 0.2)  # the deadline, much shortened
        except TimeoutError:
            pass
        await conn.close()

    elapsed = 0.0

    async def main() -> None:
        nonlocal elapsed
        elapsed = await one_session(session, connect)

    run_on(loop_name, main)
    assert elapsed < 2


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_client_that_reads_nothing_is_cut_when_its_session_closes(
    loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers the client never reads (a full window) can't hold its session's task: the close
    sends what it can for CLOSE_SECONDS, then cuts the connection."""
    monkeypatch.setattr(client_conn, "CLOSE_SECONDS", 0.5)

    async def session(conn: ClientConn) -> None:
        for _ in range(100_000):
            conn.transport.write(b"+OK Capability list follows\r\nUSER\r\n.\r\n")
        await conn.close()
        assert conn.lost

    elapsed = 0.0

    async def main() -> None:
        nonlocal elapsed
        elapsed = await one_session(session, lambda port: connect(port, receive_buffer=4096))

    run_on(loop_name, main)
    assert 0.4 < elapsed < 3

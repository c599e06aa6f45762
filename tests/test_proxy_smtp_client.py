"""A submission client's connection on the proxy's own protocol (``smtp_client.ConnClient``), against
raw sockets on loopback: lines however they are cut, overlong lines read through and reported once, a
partial last line dropped, the idle deadline's ``421``, a writer that waits for a client that reads
nothing, and the leg handed to the relay with what the client sent behind its login."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from runners.proxy.client_conn import CLIENT_LIMIT, ClientConn
from runners.proxy.smtp_client import ConnClient, SubmissionConn

Session = Callable[[ConnClient], Awaitable[object]]


async def serve_one(
    session: Session, client: Callable[[socket.socket], Awaitable[None]], timeout: float = 5.0
) -> object:
    """Serve one loopback connection with ``session`` (on its own task, as the listener makes it) while
    ``client`` does its part on a non-blocking socket; the session's result."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[object]] = []

    def connected(conn: ClientConn) -> None:
        assert isinstance(conn, SubmissionConn)
        client = ConnClient(conn, tls=False, timeout=timeout)
        client.task = loop.create_task(session(client))  # type: ignore[assignment]
        tasks.append(client.task)

    server = await loop.create_server(lambda: SubmissionConn(loop, connected), "127.0.0.1", 0)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little of what is sent
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, server.sockets[0].getsockname()[:2])
        await client(sock)
        while not tasks:
            await asyncio.sleep(0.01)
        return await asyncio.wait_for(tasks[0], 10)
    finally:
        sock.close()
        server.close()


async def send_in_pieces(sock: socket.socket, data: bytes, size: int) -> None:
    loop = asyncio.get_running_loop()
    for start in range(0, len(data), size):
        await loop.sock_sendall(sock, data[start : start + size])
        await asyncio.sleep(0)


def test_lines_split_anywhere_and_overlong_ones_reported_once() -> None:
    huge = b"x" * (CLIENT_LIMIT + 1)  # no line end within the buffer: dropped when it comes

    async def session(conn: ConnClient) -> list[tuple[bytes, bool] | None]:
        lines = []
        for _ in range(5):
            line = await conn.read()
            lines.append(None if line is None else (line.data, line.too_long))
        return lines

    async def client(sock: socket.socket) -> None:
        await send_in_pieces(sock, b"EHLO a.test\r\n" + b"A" * 3000 + b"\r\n", 7)
        await asyncio.sleep(0.1)
        await asyncio.get_running_loop().sock_sendall(sock, huge)
        await asyncio.sleep(0.1)  # the session has dropped the huge line's bytes: its end comes alone
        await asyncio.get_running_loop().sock_sendall(sock, b"yy\r\nNOOP\r\nQUIT")
        sock.shutdown(socket.SHUT_WR)  # "QUIT" without its line end: dropped

    got = asyncio.run(serve_one(session, client))
    assert got == [(b"EHLO a.test\r\n", False), (b"", True), (b"", True), (b"NOOP\r\n", False), None]


def test_a_silent_client_is_told_421() -> None:
    async def session(conn: ConnClient) -> object:
        line = await conn.read()
        await conn.close()
        return line

    async def main() -> tuple[object, bytes]:
        loop = asyncio.get_running_loop()
        said = bytearray()
        collected: list[asyncio.Task[None]] = []

        async def listen(sock: socket.socket) -> None:
            async def collect() -> None:
                while chunk := await loop.sock_recv(sock, 1024):
                    said.extend(chunk)

            collected.append(loop.create_task(collect()))

        result = await serve_one(session, listen, timeout=0.2)
        await asyncio.wait_for(collected[0], 5)  # the session closed: the client reads to the end
        return result, bytes(said)

    result, said = asyncio.run(main())
    assert result is None
    assert said == b"421 4.4.2 idle too long, closing\r\n"


def test_a_writer_waits_for_a_client_that_reads_nothing_and_goes_on_when_it_reads() -> None:
    async def session(conn: ConnClient) -> int:
        transport = conn.conn.transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        transport.set_write_buffer_limits(high=1024)
        most = 0
        for _ in range(2000):  # far more than the socket buffers hold
            await conn.send_raw(b"250 " + b"y" * 1020 + b"\r\n")
            most = max(most, transport.get_write_buffer_size())
        await conn.close()
        return most

    async def client(sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.2)  # reads nothing for a while: the session must wait, not buffer it all
        total = 0
        while chunk := await loop.sock_recv(sock, 65536):
            total += len(chunk)
        assert total == 2000 * 1026

    assert asyncio.run(serve_one(session, client)) < 4096  # never much above the high-water mark


def test_the_drained_future_follows_the_transports_flow_control() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        conn = SubmissionConn(loop, lambda _: None)
        assert conn.drained is None
        conn.pause_writing()
        waiter = conn.drained
        assert waiter is not None and not waiter.done()
        conn.resume_writing()
        assert waiter.done() and conn.drained is None
        conn.pause_writing()
        lost = conn.drained
        conn.connection_lost(None)  # a client gone while the session waited: it is woken
        assert lost is not None and lost.done()

    asyncio.run(main())


def test_the_leg_holds_what_the_client_sent_behind_its_login() -> None:
    async def session(conn: ConnClient) -> tuple[bytes, bool]:
        line = await conn.read()
        assert line is not None and line.data == b"AUTH PLAIN x\r\n"
        while b"QUIT" not in conn.conn.buffer:
            await conn.conn.wait()
        leg = conn.leg()
        assert not leg.tls
        rest = leg.take_rest()
        leg.transport.close()
        return rest

    async def client(sock: socket.socket) -> None:
        await asyncio.get_running_loop().sock_sendall(sock, b"AUTH PLAIN x\r\nMAIL FROM:<a@b>\r\nQUIT\r\n")

    assert asyncio.run(serve_one(session, client)) == (b"MAIL FROM:<a@b>\r\nQUIT\r\n", False)

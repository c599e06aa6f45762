"""The backend's login dialogue run in a connection's callbacks (``backend_connect.open_dialogue``),
against a raw backend on loopback: what the backend sends behind its last login line reaches the
relay's streams, and a backend that greets wrongly, hangs up or is too slow ends the dialogue with an
error and a closed connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from scripted_backend import against_scripted_backend, closed_port

from runners.proxy.backend_connect import BackendTls, BackendUnavailable, open_dialogue, open_leg, unconnected
from runners.proxy.contracts import BackendEndpoint, TlsMode


class OneLogin:
    """Greeting, then ``LOGIN``; over at the tagged answer."""

    def __init__(self) -> None:
        self.write: Callable[[bytes], None] = unconnected
        self.lines: list[bytes] = []

    def step(self, line: bytes) -> bool:
        self.lines.append(line)
        if len(self.lines) == 1:
            if not line.startswith(b"* OK"):
                raise BackendUnavailable(f"greeted with {line!r}")
            self.write(b"A LOGIN alice secret\r\n")
            return False
        return line.startswith(b"A ")


def test_what_the_backend_sends_behind_the_login_answer_reaches_the_streams() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK ready\r\n")
        assert await reader.readline() == b"A LOGIN alice secret\r\n"
        writer.write(b"* CAPABILITY IMAP4rev1\r\nA OK Logged in\r\n* 3 EXISTS\r\n")  # one segment
        assert await reader.readline() == b"B NOOP\r\n"
        writer.write(b"B OK done\r\n")
        await reader.read()

    async def check(endpoint: BackendEndpoint) -> None:
        steps = OneLogin()
        reader, writer = await open_dialogue(endpoint, BackendTls(), steps)
        assert steps.lines == [b"* OK ready", b"* CAPABILITY IMAP4rev1", b"A OK Logged in"]
        assert await reader.readline() == b"* 3 EXISTS\r\n"
        writer.write(b"B NOOP\r\n")
        assert await reader.readline() == b"B OK done\r\n"
        writer.close()
        await writer.wait_closed()

    against_scripted_backend(backend, check)


class Collector(asyncio.Protocol):
    """What a relay's protocol sees once it takes a transport over: the bytes, then the end; like the
    relay's, it tells the protocol it replaced of the connection's loss (the leg's wait_closed)."""

    def __init__(self, replaced: asyncio.BaseProtocol) -> None:
        self.replaced = replaced
        self.data = b""
        self.ended = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.replaced.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.ended.set_result(None)
        return False


def test_a_relay_leg_keeps_what_the_backend_sent_and_closed_before_the_relay_took_over() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK ready\r\n")
        assert await reader.readline() == b"A LOGIN alice secret\r\n"
        writer.write(b"A OK Logged in\r\n* BYE one\r\n")  # one segment: the reader holds the BYE
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"* BYE two\r\n")  # while the proxy's reading is paused
        writer.close()

    async def check(endpoint: BackendEndpoint) -> None:
        leg = await open_leg(endpoint, BackendTls(), OneLogin())
        await asyncio.sleep(0.3)  # observers told meanwhile: the backend has sent the rest and closed
        transport = leg.transport
        collector = Collector(transport.get_protocol())
        transport.set_protocol(collector)  # the relay's part
        rest, eof = leg.take_rest()
        transport.resume_reading()
        await asyncio.wait_for(collector.ended, 10)
        assert (rest, eof) == (b"* BYE one\r\n", False)
        assert rest + collector.data == b"* BYE one\r\n* BYE two\r\n"
        transport.close()
        await asyncio.wait_for(leg.wait_closed(), 10)

    against_scripted_backend(backend, check)


def test_a_backend_that_greets_wrongly_is_unavailable() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* BYE go away\r\n")
        await reader.read()

    async def check(endpoint: BackendEndpoint) -> None:
        with pytest.raises(BackendUnavailable, match="BYE go away"):
            await open_dialogue(endpoint, BackendTls(), OneLogin())

    against_scripted_backend(backend, check)


def test_a_backend_that_hangs_up_mid_login_is_an_incomplete_read() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK ready\r\n")
        await reader.readline()
        writer.write(b"A OK half a li")

    async def check(endpoint: BackendEndpoint) -> None:
        with pytest.raises(asyncio.IncompleteReadError) as caught:
            await open_dialogue(endpoint, BackendTls(), OneLogin())
        assert caught.value.partial == b"A OK half a li"

    against_scripted_backend(backend, check)


def test_a_backend_too_slow_for_the_deadline_is_cut_off() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK ready\r\n")
        await reader.read()  # never answers the login; returns when the proxy's side closes

    async def check(endpoint: BackendEndpoint) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await open_dialogue(endpoint, BackendTls(), OneLogin())

    against_scripted_backend(backend, check)


def test_a_backend_that_is_down_is_unavailable_at_once() -> None:
    async def main() -> None:
        port = await closed_port()
        endpoint = BackendEndpoint(host="127.0.0.1", port=port, tls=TlsMode.NONE)
        with pytest.raises(BackendUnavailable, match="connection refused"):
            await open_dialogue(endpoint, BackendTls(), OneLogin())

    asyncio.run(main())

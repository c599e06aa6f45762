"""A submission backend's login (``smtp_backend.log_in``), run in the connection's callbacks, against raw
backends on loopback: replies split anywhere or sent in one piece, AUTH LOGIN's prompts, what the
backend sends behind ``235`` kept for the relay's leg, STARTTLS that drops what the backend sent in
clear behind its ``220``, and each way a backend can fail ending as ``BackendUnavailable`` with the
connection closed."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from scripted_backend import against_scripted_backend, closed_port
from servers.tlsca import ThrowawayCA

from runners.proxy.contracts import BackendEndpoint, TlsMode
from runners.proxy.smtp_backend import BackendUnavailable, log_in

EHLO = b"250-backend.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n"
PASSWORD = "pw-Secret-7"


async def dribble(writer: asyncio.StreamWriter, data: bytes) -> None:
    """``data`` a few bytes at a time, each piece its own segment."""
    for start in range(0, len(data), 5):
        writer.write(data[start : start + 5])
        await writer.drain()
        await asyncio.sleep(0.001)


def test_replies_in_pieces_auth_plain_and_what_follows_235_reaches_the_streams() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await dribble(writer, b"220 backend.test ESMTP\r\n")
        assert await reader.readline() == b"EHLO client.test\r\n"
        await dribble(writer, EHLO)
        blob = base64.b64encode(f"\0alice@legacy.test\0{PASSWORD}".encode())
        assert await reader.readline() == b"AUTH PLAIN " + blob + b"\r\n"
        writer.write(b"235 2.7.0 ok\r\n250 early\r\n")  # one segment: the second reply is the relay's
        assert await reader.readline() == b"QUIT\r\n"
        writer.write(b"221 bye\r\n")
        await reader.read()

    async def check(endpoint: BackendEndpoint) -> None:
        answer, session = await log_in(endpoint, "client.test", "alice@legacy.test", PASSWORD)
        assert (answer.code, answer.lines) == (235, ("2.7.0 ok",))
        assert session.extensions == {"PIPELINING": (), "SIZE": ("1000",), "AUTH": ("PLAIN", "LOGIN")}
        assert not session.tls
        # No streams: the relay's leg, reading paused, with what came behind the 235 kept for it.
        assert session.leg.take_rest() == (b"250 early\r\n", False)
        await session.close()  # QUIT, as the backend expects, then the close
        assert session.leg.transport.is_closing()

    against_scripted_backend(backend, check)


def test_auth_login_answers_each_prompt_and_the_refusal_is_scrubbed() -> None:
    user_blob = base64.b64encode(b"bob").decode()
    password_blob = base64.b64encode(PASSWORD.encode()).decode()

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 backend.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-backend.test\r\n250 AUTH LOGIN\r\n")
        assert await reader.readline() == b"AUTH LOGIN\r\n"
        writer.write(b"334 VXNlcm5hbWU6\r\n")
        assert await reader.readline() == user_blob.encode() + b"\r\n"
        writer.write(b"334 UGFzc3dvcmQ6\r\n")
        assert await reader.readline() == password_blob.encode() + b"\r\n"
        writer.write(f"535-you sent {password_blob}\r\n535 5.7.8 and {PASSWORD} does not match\r\n".encode())
        await reader.read()

    async def check(endpoint: BackendEndpoint) -> None:
        answer, session = await log_in(endpoint, "client.test", "bob", PASSWORD)
        assert (answer.code, answer.lines) == (
            535,
            ("you sent ********", "5.7.8 and ******** does not match"),
        )
        await session.close(quit_first=False)

    against_scripted_backend(backend, check)


def test_a_malformed_reply_after_auth_is_scrubbed_before_it_is_told() -> None:
    blob = base64.b64encode(f"\0bob\0{PASSWORD}".encode()).decode()

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 backend.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-backend.test\r\n250 AUTH PLAIN\r\n")
        await reader.readline()
        writer.write(f"oops {blob} {PASSWORD}\r\n".encode())  # no reply code: echoes what it got
        await reader.read()

    async def check(endpoint: BackendEndpoint) -> None:
        with pytest.raises(BackendUnavailable) as refused:
            await log_in(endpoint, "client.test", "bob", PASSWORD)
        assert str(refused.value).endswith("not an SMTP reply: oops ******** ********")
        assert PASSWORD not in str(refused.value) and blob[:12] not in str(refused.value)

    against_scripted_backend(backend, check)


def test_starttls_drops_what_the_backend_sent_in_clear_behind_its_220(tmp_path: Path) -> None:
    ca = ThrowawayCA(tmp_path)
    leaf = ca.issue("backend", days=30)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(leaf.cert, leaf.key)

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 backend.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-backend.test\r\n250 STARTTLS\r\n")
        assert await reader.readline() == b"STARTTLS\r\n"
        # An injected EHLO answer offering no AUTH: taken as said inside TLS, it would end the login.
        writer.write(b"220 go ahead\r\n250 injected\r\n")
        await writer.drain()
        await writer.start_tls(server_tls)
        assert await reader.readline() == b"EHLO client.test\r\n"
        writer.write(EHLO)
        assert (await reader.readline()).startswith(b"AUTH PLAIN ")
        writer.write(b"235 2.7.0 ok\r\n")
        await reader.read()

    async def check(endpoint: BackendEndpoint) -> None:
        answer, session = await log_in(endpoint, "client.test", "alice", PASSWORD)
        assert answer.code == 235 and session.tls
        assert "AUTH" in session.extensions and "STARTTLS" not in session.extensions
        session.leg.transport.close()

    against_scripted_backend(backend, check, tls=TlsMode.STARTTLS, ca_file=ca.ca_file)


@pytest.mark.parametrize(
    ("said", "words"),
    [
        (b"554 5.3.2 busy\r\n", "greeting 554 5.3.2 busy"),
        (b"220-backend.test\r\n554 5.3.2 busy\r\n", "greeting 554 backend.test 5.3.2 busy"),
        (b"2201 hi\r\n", "not an SMTP reply: 2201 hi"),
        (b"220 hi\r\n" + b"250-x\r\n" * 100 + b"250 y\r\n", "a reply of more than 100 lines"),
        (b"220 hi\r\nHTTP/1.1 400 Bad Request\r\n", "not an SMTP reply"),
        (b"220 hi\r\n250 " + b"x" * 3000 + b"\r\n", "not an SMTP reply"),
        (b"220 hi\r\n250-backend.test\r\n250 SIZE 10\r\n", "neither AUTH PLAIN nor AUTH LOGIN"),
        (b"220 hi\r\n554 5.7.1 go away\r\n", "EHLO answered 554 5.7.1 go away"),
        (b"220 hi\r\n554-backend.test\r\n554 AUTH PLAIN\r\n", "EHLO answered 554"),
        (b"220 hi\r\n2x0-backend.test\r\n250 AUTH PLAIN\r\n", "not an SMTP reply: 2x0-backend.test"),
    ],
)
def test_a_backend_that_speaks_nonsense_is_unavailable(said: bytes, words: str) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(said)
        await reader.read()

    async def check(endpoint: BackendEndpoint) -> None:
        with pytest.raises(BackendUnavailable, match=words):
            await log_in(endpoint, "client.test", "alice", PASSWORD)

    against_scripted_backend(backend, check)


def test_a_backend_that_hangs_up_mid_reply_is_unavailable() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.readline()
        writer.write(b"250-back")  # and hangs up

    async def check(endpoint: BackendEndpoint) -> None:
        with pytest.raises(BackendUnavailable, match="the connection closed"):
            await log_in(endpoint, "client.test", "alice", PASSWORD)

    against_scripted_backend(backend, check)


def test_a_login_cancelled_by_its_deadline_closes_the_backends_connection() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.read()  # never answers EHLO; returns when the proxy's side closes

    async def check(endpoint: BackendEndpoint) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await log_in(endpoint, "client.test", "alice", PASSWORD)

    against_scripted_backend(backend, check)


def test_a_backend_that_is_down_is_unavailable_at_once() -> None:
    async def main() -> None:
        port = await closed_port()
        with pytest.raises(BackendUnavailable, match="connection refused"):
            await log_in(BackendEndpoint("127.0.0.1", port, TlsMode.NONE), "client.test", "alice", PASSWORD)

    asyncio.run(main())


def test_plain_smtp_to_a_backend_off_loopback_is_refused_before_connecting() -> None:
    async def main() -> None:
        with pytest.raises(BackendUnavailable, match="only loopback backends may be plain"):
            await log_in(BackendEndpoint("192.0.2.1", 587, TlsMode.NONE), "client.test", "alice", PASSWORD)

    asyncio.run(main())


def test_an_ehlo_answer_seen_before_is_still_checked_and_followed() -> None:
    """The proxy works out an EHLO answer's keywords once and keeps them by its lines after the first:
    a later session with the same lines still has its first line checked, and answers that differ in
    any later line (a 554 in place of the 250, LOGIN in place of PLAIN) are read afresh."""
    rest = b"250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"

    def script(
        ehlo: bytes, auth: bytes | None
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 backend.test ESMTP\r\n")
            await reader.readline()
            writer.write(ehlo)
            if auth is not None:
                assert (await reader.readline()).startswith(auth)
                writer.write(b"235 2.7.0 ok\r\n")
            await reader.read()

        return backend

    def logs_in(ehlo: bytes, offered: bytes, used: bytes) -> None:
        async def check(endpoint: BackendEndpoint) -> None:
            answer, session = await log_in(endpoint, "client.test", "alice", PASSWORD)
            assert answer.code == 235
            assert session.extensions == {"PIPELINING": (), "AUTH": tuple(offered.decode().split())}
            await session.close(quit_first=False)

        against_scripted_backend(script(ehlo, b"AUTH " + used), check)

    def refused(ehlo: bytes, words: str) -> None:
        async def check(endpoint: BackendEndpoint) -> None:
            with pytest.raises(BackendUnavailable, match=words):
                async with asyncio.timeout(10):  # a login that went on would wait for a 235 never sent
                    await log_in(endpoint, "client.test", "alice", PASSWORD)

        against_scripted_backend(script(ehlo, None), check)

    for _ in range(2):
        logs_in(b"250-backend.test\r\n" + rest, b"PLAIN LOGIN", b"PLAIN ")
    logs_in(b"250-another.name Hello client.test\r\n" + rest, b"PLAIN LOGIN", b"PLAIN ")
    refused(b"25x-backend.test\r\n" + rest, "not an SMTP reply: 25x-backend.test")
    refused(b"250-backend.test\r\n250-PIPELINING\r\n554 AUTH PLAIN LOGIN\r\n", "EHLO answered 554")
    logs_in(b"250-backend.test\r\n250-PIPELINING\r\n250 AUTH LOGIN\r\n", b"LOGIN", b"LOGIN\r\n")

"""How the proxy logs in on a POP3 backend, against a scripted backend (Dovecot has SASL PLAIN, so
the suite's real ones never refuse it): ``AUTH PLAIN`` with its initial response first; a backend
that refuses the command itself gets USER and PASS, then and at every later login; a refused
password (an ``-ERR`` with a response code) is the login's answer, with no second try."""

from __future__ import annotations

import asyncio
import base64

import pytest
from scripted_backend import Backend, against_scripted_backend

from runners.proxy import pop3_session
from runners.proxy.backend_connect import BackendTls, open_leg
from runners.proxy.contracts import BackendEndpoint, Password

PLAIN = b"AUTH PLAIN " + base64.b64encode(b"\0alice\0secret") + b"\r\n"


@pytest.fixture(autouse=True)
def no_backend_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pop3_session, "_USER_PASS_ONLY", set())


def scripted(auth_answer: bytes, seen: list[bytes]) -> Backend:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK ready\r\n")
        while line := await reader.readline():
            seen.append(line)
            if line == b"AUTH PLAIN\r\n":
                writer.write(b"+ \r\n")
            elif line.startswith(b"AUTH") or line.startswith(base64.b64encode(b"\0alice")):
                writer.write(auth_answer)
            elif line.startswith(b"USER"):
                writer.write(b"+OK\r\n")
            elif line.startswith(b"PASS"):
                writer.write(b"+OK Logged in.\r\n")

    return backend


async def log_in(endpoint: BackendEndpoint, password: str) -> tuple[bool, bytes]:
    steps = pop3_session._BackendLogin("alice", Password(password), endpoint, lambda: None)
    leg = await open_leg(endpoint, BackendTls(), steps)
    leg.transport.close()
    return steps.ok, steps.answer


def test_a_backend_without_auth_gets_user_and_pass_then_and_from_then_on() -> None:
    seen: list[bytes] = []

    async def check(endpoint: BackendEndpoint) -> None:
        assert await log_in(endpoint, "secret") == (True, b"+OK Logged in.")
        assert seen == [PLAIN, b"USER alice\r\n", b"PASS secret\r\n"]
        assert await log_in(endpoint, "secret") == (True, b"+OK Logged in.")
        assert seen[3:] == [b"USER alice\r\n", b"PASS secret\r\n"]  # no AUTH asked again

    against_scripted_backend(scripted(b"-ERR Unknown command.\r\n", seen), check)


def test_a_refused_password_is_the_answer_with_no_second_try() -> None:
    seen: list[bytes] = []

    async def check(endpoint: BackendEndpoint) -> None:
        assert await log_in(endpoint, "secret") == (False, b"-ERR [AUTH] Authentication failed.")
        assert seen == [PLAIN]
        assert not pop3_session._USER_PASS_ONLY

    against_scripted_backend(scripted(b"-ERR [AUTH] Authentication failed.\r\n", seen), check)


def test_a_response_too_long_for_the_command_line_goes_after_the_continuation() -> None:
    """RFC 5034: an AUTH command with its initial response stays within 255 octets."""
    seen: list[bytes] = []
    password = "p" * 200

    async def check(endpoint: BackendEndpoint) -> None:
        assert await log_in(endpoint, password) == (True, b"+OK Logged in.")
        response = base64.b64encode(b"\0alice\0" + password.encode()) + b"\r\n"
        assert seen == [b"AUTH PLAIN\r\n", response]

    against_scripted_backend(scripted(b"+OK Logged in.\r\n", seen), check)

"""How the proxy logs in on a POP3 backend, against scripted backends (the suite's real Dovecots list
SASL PLAIN, so they show only one way): CAPA at a backend's first login; ``AUTH PLAIN`` with its
initial response where CAPA lists it, USER and PASS where it doesn't or where CAPA itself is unknown,
then and at every later login; a refused password is the login's answer, never tried a second way
(a lock-out policy on the backend would count each try)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from scripted_backend import Backend, against_scripted_backend

from runners.proxy import pop3_session
from runners.proxy.backend_connect import BackendTls, open_leg
from runners.proxy.contracts import BackendEndpoint, Password

PLAIN = b"AUTH PLAIN " + base64.b64encode(b"\0alice\0secret") + b"\r\n"
WITH_PLAIN = b"+OK\r\nUSER\r\nSASL LOGIN PLAIN\r\nRESP-CODES\r\n.\r\n"
WITHOUT_SASL = b"+OK\r\nUSER\r\nTOP\r\nUIDL\r\n.\r\n"
NO_CAPA = b"-ERR Unknown command.\r\n"


@pytest.fixture(autouse=True)
def no_backend_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pop3_session, "_PLAIN_LOGIN", {})


def scripted(capa: bytes, auth_answer: bytes, seen: list[bytes], *, challenges: int = 0) -> Backend:
    """A POP3 backend answering CAPA with ``capa`` and an AUTH with ``challenges`` continuations
    ("+ ") in all before ``auth_answer``; ``*`` cancels."""

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK ready\r\n")
        asked = 0
        while line := await reader.readline():
            seen.append(line)
            if line == b"CAPA\r\n":
                writer.write(capa)
            elif line == b"*\r\n":
                writer.write(b"-ERR [AUTH] Cancelled.\r\n")
            elif line.startswith((b"AUTH", base64.b64encode(b"\0alice"))):
                asked += 1
                writer.write(b"+ \r\n" if asked <= challenges else auth_answer)
            elif line.startswith(b"USER"):
                writer.write(b"+OK\r\n")
            elif line.startswith(b"PASS"):
                writer.write(
                    b"+OK Logged in.\r\n" if line == b"PASS secret\r\n" else b"-ERR Login failed.\r\n"
                )

    return backend


async def log_in(endpoint: BackendEndpoint, password: str) -> tuple[bool, bytes]:
    steps = pop3_session._BackendLogin("alice", Password(password), endpoint, lambda: None)
    leg = await open_leg(endpoint, BackendTls(), steps)
    leg.transport.close()
    return steps.ok, steps.answer


@pytest.mark.parametrize("capa", [WITHOUT_SASL, NO_CAPA], ids=["capa-without-sasl", "no-capa"])
def test_a_backend_without_sasl_plain_gets_user_and_pass_then_and_from_then_on(capa: bytes) -> None:
    seen: list[bytes] = []

    async def check(endpoint: BackendEndpoint) -> None:
        assert await log_in(endpoint, "secret") == (True, b"+OK Logged in.")
        assert seen == [b"CAPA\r\n", b"USER alice\r\n", b"PASS secret\r\n"]
        assert await log_in(endpoint, "wrong") == (False, b"-ERR Login failed.")
        assert seen[3:] == [b"USER alice\r\n", b"PASS wrong\r\n"]  # CAPA not asked again

    against_scripted_backend(scripted(capa, b"-ERR Unknown command.\r\n", seen), check)


def test_a_backend_with_sasl_plain_gets_one_round_trip_from_then_on() -> None:
    seen: list[bytes] = []

    async def check(endpoint: BackendEndpoint) -> None:
        assert await log_in(endpoint, "secret") == (True, b"+OK Logged in.")
        assert seen == [b"CAPA\r\n", PLAIN]
        assert await log_in(endpoint, "secret") == (True, b"+OK Logged in.")
        assert seen[2:] == [PLAIN]

    against_scripted_backend(scripted(WITH_PLAIN, b"+OK Logged in.\r\n", seen), check)


@pytest.mark.parametrize(
    "refusal", [b"-ERR [AUTH] Authentication failed.", b"-ERR Logon failure: bad password."]
)
def test_a_refused_password_is_the_answer_with_no_second_try(refusal: bytes) -> None:
    """With a response code or without one (many legacy servers give none): one failure, not two."""
    seen: list[bytes] = []

    async def check(endpoint: BackendEndpoint) -> None:
        assert await log_in(endpoint, "secret") == (False, refusal)
        assert seen == [b"CAPA\r\n", PLAIN]
        assert pop3_session._PLAIN_LOGIN == {(endpoint.host, endpoint.port): True}

    against_scripted_backend(scripted(WITH_PLAIN, refusal + b"\r\n", seen), check)


def test_a_response_too_long_for_the_command_line_goes_after_the_continuation() -> None:
    """RFC 5034: an AUTH command with its initial response stays within 255 octets."""
    seen: list[bytes] = []
    password = "p" * 200

    async def check(endpoint: BackendEndpoint) -> None:
        assert await log_in(endpoint, password) == (True, b"+OK Logged in.")
        response = base64.b64encode(b"\0alice\0" + password.encode()) + b"\r\n"
        assert seen == [b"CAPA\r\n", b"AUTH PLAIN\r\n", response]

    against_scripted_backend(scripted(WITH_PLAIN, b"+OK Logged in.\r\n", seen, challenges=1), check)


def test_a_second_challenge_is_cancelled_and_the_refusal_is_the_answer() -> None:
    """PLAIN has one step: a backend asking again gets ``*`` (RFC 5034 4), never the password twice."""
    seen: list[bytes] = []

    async def check(endpoint: BackendEndpoint) -> None:
        assert await log_in(endpoint, "secret") == (False, b"-ERR [AUTH] Cancelled.")
        assert seen == [b"CAPA\r\n", PLAIN, base64.b64encode(b"\0alice\0secret") + b"\r\n", b"*\r\n"]

    against_scripted_backend(scripted(WITH_PLAIN, b"+OK Logged in.\r\n", seen, challenges=2), check)

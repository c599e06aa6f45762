"""The proxy's limits before login, each met by a raw-socket client: overlong lines and literals, a
client too slow to log in, too many unauthenticated connections from one address, repeated failed
logins (delayed, then locked out), malformed SASL base64, and too many bad commands."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DovecotFactory
from proxy_harness import QUICK_FAILURES, USERS, ProxyThread, Recorder, eventually, write_proxy_plan
from servers.dovecot import DovecotServer

from runners.proxy.contracts import Outcome

LIMITS = """max_line_bytes = 1024
max_literal_bytes = 256
max_unauthenticated_per_address = 3
lockout_failures = 2
lockout_seconds = 600
"""


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        return self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def start(
    tmp_path: Path, dovecot_factory: DovecotFactory, limits: str
) -> Iterator[tuple[dict[str, int], Recorder]]:
    legacy: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    target: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    plan, ports = write_proxy_plan(tmp_path, legacy, target, limits=limits)
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder]):
        yield ports, recorder


@pytest.fixture
def proxy(tmp_path: Path, dovecot_factory: DovecotFactory) -> Iterator[tuple[dict[str, int], Recorder]]:
    yield from start(tmp_path, dovecot_factory, LIMITS)


@pytest.fixture
def impatient_proxy(
    tmp_path: Path, dovecot_factory: DovecotFactory
) -> Iterator[tuple[dict[str, int], Recorder]]:
    yield from start(tmp_path, dovecot_factory, "login_timeout_seconds = 0.5")


def test_overlong_lines_and_literals_before_login_end_the_connection(
    proxy: tuple[dict[str, int], Recorder],
) -> None:
    ports, _ = proxy
    raw = Raw(ports["imap"])
    raw.send(b"a LOGIN " + b"x" * 2000 + b"\r\n")
    assert raw.line() == b"* BYE Too long command line.\r\n"
    assert raw.line() == b""
    raw = Raw(ports["imap"])
    raw.send(b"a LOGIN {100000}\r\n")
    assert raw.line() == b"* BYE Too long literal before login.\r\n"
    raw = Raw(ports["imap"])
    raw.send(b"a LOGIN alice {300+}\r\n" + b"y" * 300 + b"\r\n")
    assert raw.line() == b"* BYE Too long literal before login.\r\n"
    raw = Raw(ports["imap"])
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ \r\n"
    raw.send(b"A" * 2000 + b"\r\n")
    assert raw.line() == b"* BYE Too long command line.\r\n"
    raw = Raw(ports["pop3"])
    raw.send(b"USER " + b"x" * 2000 + b"\r\n")
    assert raw.line() == b"-ERR Too long command line.\r\n"
    assert raw.line() == b""


def test_a_client_too_slow_to_log_in_is_disconnected(
    impatient_proxy: tuple[dict[str, int], Recorder],
) -> None:
    ports, _ = impatient_proxy
    imap, pop3 = Raw(ports["imap"]), Raw(ports["pop3"])
    imap.send(b"a LOGIN alice")  # and never the end of the line
    assert imap.line() == b"* BYE Disconnected for inactivity.\r\n"
    assert pop3.line() == b"-ERR Disconnected for inactivity.\r\n"


def test_too_many_unauthenticated_connections_from_one_address(
    proxy: tuple[dict[str, int], Recorder],
) -> None:
    ports, _ = proxy
    waiting = [Raw(ports["imap"]) for _ in range(2)] + [Raw(ports["pop3"])]
    assert all(w.greeting.startswith((b"* OK", b"+OK")) for w in waiting)
    assert Raw(ports["imap"]).greeting == b"* BYE [UNAVAILABLE] Too many connections from your address.\r\n"
    assert Raw(ports["pop3"]).greeting == b"-ERR [SYS/TEMP] Too many connections from your address.\r\n"
    waiting[0].send(b"a LOGIN alice alice-secret\r\n")
    assert waiting[0].line().startswith(b"a OK")  # a logged-in session no longer counts
    assert Raw(ports["imap"]).greeting.startswith(b"* OK")


def test_failed_logins_lock_the_user_and_the_address_out(proxy: tuple[dict[str, int], Recorder]) -> None:
    ports, recorder = proxy
    raw = Raw(ports["imap"])
    for tag in (b"a", b"b"):
        raw.send(tag + b" LOGIN alice wrong-password\r\n")
        assert raw.line() == tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    raw.send(b"c LOGIN alice alice-secret\r\n")  # right, but too late
    assert raw.line() == b"c NO [UNAVAILABLE] Too many failed logins; try again later.\r\n"
    raw.close()
    raw = Raw(ports["pop3"])
    raw.send(b"USER bob\r\nPASS bob-secret\r\n")  # another user, from the locked address
    assert raw.line() == b"+OK\r\n"
    assert raw.line() == b"-ERR [SYS/TEMP] Too many failed logins; try again later.\r\n"
    expected = [("alice", Outcome.REJECTED), ("alice", Outcome.REJECTED), ("alice", Outcome.BLOCKED),
                ("bob", Outcome.BLOCKED)]  # fmt: skip
    assert eventually(lambda: [(e.login, e.outcome) for e, _ in recorder.events], expected) == expected
    assert recorder.events[2][0].route is None  # refused before any routing


def test_malformed_sasl_and_too_many_bad_commands(proxy: tuple[dict[str, int], Recorder]) -> None:
    ports, recorder = proxy
    raw = Raw(ports["imap"])
    raw.send(b"a AUTHENTICATE PLAIN not*base64\r\n")
    assert raw.line() == b"a BAD Invalid base64 data.\r\n"
    raw.send(b"b AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ \r\n"
    raw.send(b"@@@@\r\n")
    assert raw.line() == b"b BAD Invalid base64 data.\r\n"
    raw.send(b"c AUTHENTICATE PLAIN\r\n")
    raw.line()
    raw.send(b"*\r\n")
    assert raw.line() == b"c BAD Authentication aborted by client.\r\n"
    raw.send(b"d AUTHENTICATE PLAIN AGFsaWNl\r\n")  # base64 of "\0alice": no password part
    assert raw.line() == b"d BAD Not a plain response.\r\n"
    raw.send(b"e LOGIN just-one-argument\r\n")
    assert raw.line() == b"e BAD Invalid arguments.\r\n"
    for number in range(6):
        raw.send(b"x%d SELECT INBOX\r\n" % number)
    answers = [raw.line() for _ in range(6)]
    assert answers[-1] == b"* BYE Too many invalid IMAP commands.\r\n"
    assert raw.line() == b""
    pop = Raw(ports["pop3"])
    pop.send(b"AUTH PLAIN ===\r\n")
    assert pop.line() == b"-ERR Invalid base64 data.\r\n"
    pop.send(b"PASS before-user\r\n")
    assert pop.line() == b"-ERR No username given.\r\n"
    assert recorder.events == []

"""POP3's backend login begun at USER, through the proxy to two real Dovecots: the backend's
connection is made at USER and finished at PASS, closed when the client drops its USER (another
USER, the end of the connection, the login deadline), never made for a locked-out user, and
given up when the store moves the user between USER and PASS. The backends' connections are counted
from the kernel's table of TCP connections (/proc/net/tcp), the test's only user of those ports."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import BinaryIO

import pytest
from conftest import DovecotFactory
from proxy_harness import QUICK_FAILURES, USERS, ProxyThread, Recorder, switch_wave, write_proxy_plan
from servers.dovecot import DovecotServer
from test_proxy_pop3 import deliver
from test_proxy_tls import client_context, tls_plan

from runners.proxy.contracts import Outcome

_ESTABLISHED = "01"


@pytest.fixture
def legacy(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory(USERS, extra_conf=QUICK_FAILURES)


@pytest.fixture
def target(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory(USERS, extra_conf=QUICK_FAILURES)


def connections_to(port: int) -> int:
    """Established TCP connections on this machine to ``port`` on 127.0.0.1 (the proxy's side)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == _ESTABLISHED and int(fields[2].rpartition(":")[2], 16) == port:
            count += 1
    return count


def settles_at(port: int, expected: int) -> int:
    """``connections_to(port)`` once it is ``expected`` (a close takes a turn of the proxy's loop),
    or what it still is after 10 s."""
    deadline = time.monotonic() + 10
    while (count := connections_to(port)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return count


def settled(raw: socket.socket, file: BinaryIO) -> None:
    """CAPA asked and answered: the session has read every line before it, so what it began at the
    USER before (the backend's connection, greeting and USER) is done."""
    raw.sendall(b"CAPA\r\n")
    assert file.readline() == b"+OK Capability list follows\r\n"
    while file.readline() != b".\r\n":
        pass


def say(raw: socket.socket, file: BinaryIO, line: bytes) -> bytes:
    raw.sendall(line + b"\r\n")
    return file.readline()


def test_user_connects_the_backend_and_pass_logs_in_on_that_connection(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target)
    recorder = Recorder()
    with (
        ProxyThread(plan, observers=[recorder]),
        socket.create_connection(("127.0.0.1", ports["pop3"])) as raw,
    ):
        file = raw.makefile("rb")
        assert file.readline().startswith(b"+OK")
        assert say(raw, file, b"USER alice") == b"+OK\r\n"
        settled(raw, file)
        assert connections_to(legacy.pop3_port) == 1  # made at USER, before any PASS
        assert say(raw, file, b"PASS alice-secret").startswith(b"+OK Logged in")
        assert say(raw, file, b"STAT") == b"+OK 0 0\r\n"
        assert connections_to(legacy.pop3_port) == 1  # the same one, relayed
        assert connections_to(target.pop3_port) == 0
    assert recorder.outcomes() == [("alice", "accepted", "legacy")]
    assert recorder.events[0][1]  # the observers had the password, as after any accepted login


def test_a_second_user_or_the_client_gone_closes_the_early_connection(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    """One backend connection at most for a client's USERs: the second USER closes the first's and
    makes none (so a client repeating USER can't have the proxy connect again and again); PASS then
    logs in afresh. A client gone after USER leaves no connection behind."""
    plan, ports = write_proxy_plan(tmp_path, legacy, target)
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder]):
        with socket.create_connection(("127.0.0.1", ports["pop3"])) as raw:
            file = raw.makefile("rb")
            file.readline()
            assert say(raw, file, b"USER nobody-at-all") == b"+OK\r\n"  # unknown: the default backend
            settled(raw, file)
            assert connections_to(legacy.pop3_port) == 1
            assert say(raw, file, b"USER bob") == b"+OK\r\n"
            settled(raw, file)
            assert settles_at(legacy.pop3_port, 0) == 0
            assert say(raw, file, b"PASS bob-secret").startswith(b"+OK Logged in")
            assert connections_to(legacy.pop3_port) == 1
            raw.sendall(b"QUIT\r\n")
            assert file.readline().startswith(b"+OK")
        assert settles_at(legacy.pop3_port, 0) == 0

        with socket.create_connection(("127.0.0.1", ports["pop3"])) as raw:
            file = raw.makefile("rb")
            file.readline()
            assert say(raw, file, b"USER alice") == b"+OK\r\n"
            settled(raw, file)
            assert connections_to(legacy.pop3_port) == 1
            file.close()  # else the socket stays open behind it
        assert settles_at(legacy.pop3_port, 0) == 0  # the client went away without PASS
    assert recorder.outcomes() == [("bob", "accepted", "legacy")]


def test_a_client_that_never_sends_pass_has_the_early_connection_closed_at_the_login_deadline(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target, limits="login_timeout_seconds = 0.5")
    with ProxyThread(plan), socket.create_connection(("127.0.0.1", ports["pop3"]), timeout=10) as raw:
        file = raw.makefile("rb")
        file.readline()
        assert say(raw, file, b"USER alice") == b"+OK\r\n"
        assert file.readline() == b"-ERR Disconnected for inactivity.\r\n"
        assert file.readline() == b""
        assert settles_at(legacy.pop3_port, 0) == 0


def test_a_locked_out_user_gets_no_backend_connection_at_user(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(
        tmp_path, legacy, target, limits="lockout_failures = 2\nlockout_seconds = 600"
    )
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder]):
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", ports["pop3"])) as raw:
                file = raw.makefile("rb")
                file.readline()
                say(raw, file, b"USER alice")
                assert say(raw, file, b"PASS wrong").startswith(b"-ERR [AUTH]")
        assert settles_at(legacy.pop3_port, 0) == 0
        with socket.create_connection(("127.0.0.1", ports["pop3"])) as raw:
            file = raw.makefile("rb")
            file.readline()
            assert say(raw, file, b"USER alice") == b"+OK\r\n"
            settled(raw, file)
            assert connections_to(legacy.pop3_port) == 0
            assert say(raw, file, b"PASS alice-secret").startswith(b"-ERR [SYS/TEMP] Too many failed logins")
            assert connections_to(legacy.pop3_port) == 0
    assert recorder.outcomes() == [("alice", "rejected", "legacy")] * 2 + [("alice", "blocked", None)]


def test_a_backend_down_at_user_is_answered_at_pass_and_recorded(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(
        tmp_path, legacy, target, tail='[proxy.routing]\nstatic = { bob = "target" }'
    )
    recorder = Recorder()
    target.stop()
    with (
        ProxyThread(plan, observers=[recorder]),
        socket.create_connection(("127.0.0.1", ports["pop3"])) as raw,
    ):
        file = raw.makefile("rb")
        file.readline()
        assert say(raw, file, b"USER bob") == b"+OK\r\n"
        settled(raw, file)
        answer = say(raw, file, b"PASS bob-secret")
        assert answer == b"-ERR [SYS/TEMP] Backend server unavailable; try again later.\r\n"
        assert say(raw, file, b"USER alice") == b"+OK\r\n"  # the connection goes on; a login afresh
        assert say(raw, file, b"PASS alice-secret").startswith(b"+OK Logged in")
    assert [(e.login, e.outcome) for e, _ in recorder.events] == [
        ("bob", Outcome.UNAVAILABLE), ("alice", Outcome.ACCEPTED),
    ]  # fmt: skip
    assert "connection refused" in recorder.events[0][0].detail


def test_a_switch_between_user_and_pass_logs_in_on_the_new_route(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target)
    recorder = Recorder()
    deliver(target, "alice")
    with ProxyThread(plan, observers=[recorder]) as proxy:
        with socket.create_connection(("127.0.0.1", ports["pop3"])) as raw:
            file = raw.makefile("rb")
            file.readline()
            assert say(raw, file, b"USER alice") == b"+OK\r\n"
            settled(raw, file)
            assert connections_to(legacy.pop3_port) == 1  # begun on the legacy
            switch_wave(proxy.plan, "pilot")
            proxy.poll()
            assert say(raw, file, b"PASS alice-secret").startswith(b"+OK Logged in")
            assert say(raw, file, b"STAT").startswith(b"+OK 1 ")  # the target's mailbox
            assert settles_at(legacy.pop3_port, 0) == 0
    assert recorder.outcomes() == [("alice", "accepted", "target")]


def test_stls_drops_the_login_begun_in_clear_and_a_refused_clear_user_begins_none(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    """What a client said in clear is forgotten at STLS (RFC 2595), its backend connection with it;
    where logins in clear are refused, a USER in clear reaches no backend."""
    for policy, begun_in_clear in (("loopback", 1), ("never", 0)):
        root = tmp_path / policy
        plan, ports, ca_file = tls_plan(root, legacy, target, keys=f'plaintext_logins = "{policy}"')
        with ProxyThread(plan), socket.create_connection(("127.0.0.1", ports["pop3"])) as raw:
            file = raw.makefile("rb")
            file.readline()
            say(raw, file, b"USER alice")
            settled(raw, file)
            assert connections_to(legacy.pop3_port) == begun_in_clear
            assert say(raw, file, b"STLS") == b"+OK Begin TLS negotiation now.\r\n"
            file.close()
            with client_context(ca_file).wrap_socket(raw, server_hostname="localhost") as tls:
                secure = tls.makefile("rb")
                assert settles_at(legacy.pop3_port, 0) == 0
                assert say(tls, secure, b"USER alice") == b"+OK\r\n"
                settled(tls, secure)
                # After a USER in clear the connection had its one early login: PASS logs in afresh.
                assert connections_to(legacy.pop3_port) == 1 - begun_in_clear
                assert say(tls, secure, b"PASS alice-secret").startswith(b"+OK Logged in")
                assert connections_to(legacy.pop3_port) == 1
                secure.close()

"""POP3 through the routing proxy to two real Dovecots: USER/PASS and AUTH PLAIN, the backend's words,
a backend that is down, and the end of a moved session after the grace period."""

from __future__ import annotations

import base64
import imaplib
import poplib
import socket
from pathlib import Path

import pytest
from conftest import DovecotFactory
from proxy_harness import QUICK_FAILURES, USERS, ProxyThread, Recorder, switch_wave, write_proxy_plan
from servers.dovecot import DovecotServer

from runners.proxy.contracts import Outcome

MESSAGE = b"From: a@example.org\r\nSubject: waiting\r\n\r\nhello\r\n"


@pytest.fixture
def legacy(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory(USERS, extra_conf=QUICK_FAILURES)


@pytest.fixture
def target(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory(USERS, extra_conf=QUICK_FAILURES)


def deliver(server: DovecotServer, user: str) -> None:
    """One message in the user's INBOX, appended straight to the server."""
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(user, USERS[user])
    client.append("INBOX", None, None, MESSAGE)
    client.logout()


def test_user_pass_and_auth_plain_reach_the_routed_backend(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target)
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder]) as proxy:
        switch_wave(proxy.plan, "pilot")  # alice's wave switches before any login; bob's stays
        proxy.poll()
        deliver(target, "alice")
        pop = poplib.POP3("127.0.0.1", ports["pop3"])
        assert {"USER", "SASL", "RESP-CODES"} <= set(pop.capa())
        pop.user("alice")
        assert pop.pass_("alice-secret") == b"+OK Logged in."
        assert pop.stat()[0] == 1  # the target's mailbox
        pop.quit()

        with socket.create_connection(("127.0.0.1", ports["pop3"]), timeout=10) as raw:
            file = raw.makefile("rb")
            assert file.readline().startswith(b"+OK")
            raw.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0bob\0bob-secret") + b"\r\nSTAT\r\n")
            assert file.readline().startswith(b"+OK Logged in")
            assert file.readline() == b"+OK 0 0\r\n"  # pipelined behind the login: kept for the backend
        with socket.create_connection(("127.0.0.1", ports["pop3"]), timeout=10) as raw:
            file = raw.makefile("rb")
            file.readline()
            raw.sendall(b"AUTH PLAIN\r\n")
            assert file.readline() == b"+ \r\n"
            raw.sendall(base64.b64encode(b"\0bob\0bob-secret") + b"\r\n")
            assert file.readline().startswith(b"+OK Logged in")
    assert [(e.login, e.outcome, e.route.backend if e.route else None) for e, _ in recorder.events] == [
        ("alice", Outcome.ACCEPTED, "target"), ("bob", Outcome.ACCEPTED, "legacy"), ("bob", Outcome.ACCEPTED, "legacy"),
    ]  # fmt: skip


def test_a_refusal_and_a_backend_down(tmp_path: Path, legacy: DovecotServer, target: DovecotServer) -> None:
    plan, ports = write_proxy_plan(
        tmp_path, legacy, target, tail='[proxy.routing]\nstatic = { bob = "target" }'
    )
    recorder = Recorder()
    target.stop()
    with ProxyThread(plan, observers=[recorder]):
        pop = poplib.POP3("127.0.0.1", ports["pop3"])
        pop.user("alice")
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] Authentication failed"):
            pop.pass_("wrong-password")
        pop.user("bob")
        with pytest.raises(poplib.error_proto, match=r"-ERR \[SYS/TEMP\] Backend server unavailable"):
            pop.pass_("bob-secret")
        pop.quit()
    assert [(e.login, e.outcome) for e, _ in recorder.events] == [
        ("alice", Outcome.REJECTED), ("bob", Outcome.UNAVAILABLE),
    ]  # fmt: skip


def test_after_the_grace_period_a_moved_pop3_session_gets_in_use(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target, proxy_extra="grace_seconds = 0.1")
    with ProxyThread(plan) as proxy:
        with socket.create_connection(("127.0.0.1", ports["pop3"]), timeout=10) as raw:
            file = raw.makefile("rb")
            file.readline()
            raw.sendall(b"USER alice\r\nPASS alice-secret\r\n")
            assert file.readline() == b"+OK\r\n"
            assert file.readline().startswith(b"+OK Logged in")
            switch_wave(proxy.plan, "pilot")
            proxy.poll()
            assert (
                file.readline()
                == b"-ERR [IN-USE] Your mailbox moved to another server; please reconnect.\r\n"
            )
            assert file.readline() == b""


def test_user_and_capa_answered_at_once_but_not_inside_an_auth_exchange(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    """USER and CAPA are answered in the connection's callback while the session waits for a command;
    a line that answers AUTH's continuation is the SASL response, whatever it reads like."""
    plan, ports = write_proxy_plan(tmp_path, legacy, target)
    with ProxyThread(plan), socket.create_connection(("127.0.0.1", ports["pop3"]), timeout=10) as raw:
        file = raw.makefile("rb")
        assert file.readline().startswith(b"+OK")
        raw.sendall(b"AUTH PLAIN\r\n")
        assert file.readline() == b"+ \r\n"
        raw.sendall(b"USER alice\r\n")
        assert file.readline() == b"-ERR Invalid base64 data.\r\n"
        raw.sendall(b"PASS alice-secret\r\n")
        assert file.readline() == b"-ERR No username given.\r\n"
        raw.sendall(b"USER alice\r\n")
        assert file.readline() == b"+OK\r\n"
        raw.sendall(b"CAPA\r\n")
        assert file.readline() == b"+OK Capability list follows\r\n"
        while file.readline() != b".\r\n":
            pass
        raw.sendall(b"PASS alice-secret\r\n")
        assert file.readline().startswith(b"+OK Logged in")

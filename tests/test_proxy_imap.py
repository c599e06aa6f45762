"""IMAP through the routing proxy to two real Dovecots (legacy and target): logins of every kind, the
route (store, static, default) with the target's login suffix, the backend's words and capabilities,
a backend that is down or silent, and a switch with sessions open on both sides."""

from __future__ import annotations

import base64
import imaplib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DovecotFactory
from proxy_harness import (
    QUICK_FAILURES,
    USERS,
    ProxyThread,
    Recorder,
    eventually,
    switch_wave,
    write_proxy_plan,
)
from servers.dovecot import DovecotServer

from runners.proxy.contracts import DecidedBy, Outcome, Service

TARGET_USERS = {"alice@tenant.example": "alice-secret", "bob@tenant.example": "bob-secret",
                "carol@tenant.example": "carol-secret"}  # fmt: skip
SUFFIX = 'login_suffix = "tenant.example"'
MESSAGE = b"From: a@example.org\r\nSubject: through the proxy\r\n\r\nhello\r\n"


@pytest.fixture
def legacy(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory(USERS, extra_conf=QUICK_FAILURES)


@pytest.fixture
def target(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory(TARGET_USERS, extra_conf=QUICK_FAILURES)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def count_in_inbox(server: DovecotServer, user: str) -> int:
    new, cur = server.maildir(user) / "new", server.maildir(user) / "cur"
    return sum(len(list(d.iterdir())) for d in (new, cur) if d.is_dir())


def append_through(port: int, login: str, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login(login, password)
    client.append("INBOX", None, None, MESSAGE)
    return client


class Raw:
    """A raw-socket IMAP client for what imaplib won't send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        return self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            if not line:
                return lines
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_logins_of_every_kind_reach_the_routed_backend_with_its_capabilities(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target, target_extra=SUFFIX)
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder]):
        client = imaplib.IMAP4("127.0.0.1", ports["imap"])
        assert "AUTH=PLAIN" in client.capabilities and "SASL-IR" in client.capabilities
        typ, data = client.login("alice", "alice-secret")
        assert typ == "OK" and data[0].startswith(b"[CAPABILITY IMAP4rev1 ")
        assert b"IDLE" in data[0] and b"AUTH=" not in data[0]  # the backend's post-login list
        client.append("INBOX", None, None, MESSAGE)
        client.logout()

        client = imaplib.IMAP4("127.0.0.1", ports["imap"])  # AUTHENTICATE PLAIN with a continuation
        assert client.authenticate("PLAIN", lambda _: b"\0bob\0bob-secret")[0] == "OK"
        client.logout()

        raw = Raw(ports["imap"])  # SASL-IR: the credentials on the command line
        raw.send(b"a AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice\0alice-secret") + b"\r\n")
        assert raw.until(b"a")[-1].startswith(b"a OK [CAPABILITY ")
        raw.send(b"b LOGOUT\r\n")
        assert raw.until(b"b")[-1].startswith(b"b OK")
        raw.close()

        raw = Raw(ports["imap"])  # AUTHENTICATE LOGIN, user in the initial response
        raw.send(b"a AUTHENTICATE LOGIN " + base64.b64encode(b"bob") + b"\r\n")
        assert raw.line() == b"+ UGFzc3dvcmQ6\r\n"
        raw.send(base64.b64encode(b"bob-secret") + b"\r\n")
        assert raw.until(b"a")[-1].startswith(b"a OK ")
        raw.close()

        raw = Raw(ports["imap"])  # LOGIN with literals, one of them non-synchronizing
        raw.send(b"a LOGIN {5}\r\n")
        assert raw.line().startswith(b"+ ")
        raw.send(b"alice {12+}\r\nalice-secret\r\n")
        assert raw.until(b"a")[-1].startswith(b"a OK ")
        raw.close()
    assert count_in_inbox(legacy, "alice") == 1
    assert [o for o in recorder.outcomes()] == [
        ("alice", "accepted", "legacy"), ("bob", "accepted", "legacy"), ("alice", "accepted", "legacy"),
        ("bob", "accepted", "legacy"), ("alice", "accepted", "legacy"),
    ]  # fmt: skip
    assert all(with_password for _, with_password in recorder.events)
    assert all(e.service == Service.IMAP and e.client_address == "127.0.0.1" for e, _ in recorder.events)


def test_a_refusal_is_the_backends_words_and_no_observer_sees_the_password(
    tmp_path: Path,
    legacy: DovecotServer,
    target: DovecotServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target)
    recorder = Recorder()
    caplog.set_level(logging.DEBUG)
    with ProxyThread(plan, observers=[recorder]):
        client = imaplib.IMAP4("127.0.0.1", ports["imap"])
        with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED\] Authentication failed"):
            client.login("alice", "not-her-password")
        client.shutdown()
    ((event, with_password),) = recorder.events
    assert (event.outcome, with_password) == (Outcome.REJECTED, False)
    assert "Authentication failed" in event.detail and "not-her-password" not in repr(event)
    assert "not-her-password" not in capsys.readouterr().err
    assert "not-her-password" not in caplog.text


def test_static_route_sends_the_user_to_the_target_with_its_login_suffix(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target, target_extra=SUFFIX,
                                   tail='[proxy.routing]\nstatic = { carol = "target" }')  # fmt: skip
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder]):
        append_through(ports["imap"], "carol", "carol-secret").logout()
    assert count_in_inbox(target, "carol@tenant.example") == 1
    ((event, _),) = recorder.events
    assert event.route is not None
    assert (event.route.backend, event.route.backend_login, event.route.decided_by) == (
        "target", "carol@tenant.example", DecidedBy.STATIC,
    )  # fmt: skip


def test_a_backend_down_or_silent_is_answered_unavailable(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer, silent_port: int
) -> None:
    tail = f"""
[proxy.backends.silent]
imap = "127.0.0.1:{silent_port}"
imap_tls = "none"

[proxy.routing]
static = {{ carol = "target", dave = "silent" }}
"""
    plan, ports = write_proxy_plan(tmp_path, legacy, target, target_extra=SUFFIX, tail=tail,
                                   limits="backend_connect_seconds = 1")  # fmt: skip
    recorder = Recorder()
    target.stop()
    with ProxyThread(plan, observers=[recorder]):
        for login in ("carol", "dave"):
            client = imaplib.IMAP4("127.0.0.1", ports["imap"])
            with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\] Backend server unavailable"):
                client.login(login, "whatever-secret")
            assert client.noop()[0] == "OK"  # the client may try again on the same connection
            client.logout()
    assert [(e.login, e.outcome) for e, _ in recorder.events] == [
        ("carol", Outcome.UNAVAILABLE), ("dave", Outcome.UNAVAILABLE),
    ]  # fmt: skip
    assert "connection refused" in recorder.events[0][0].detail
    assert "no answer in time" in recorder.events[1][0].detail


def test_a_switch_keeps_open_sessions_and_sends_new_ones_to_the_target(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(tmp_path, legacy, target, target_extra=SUFFIX,
                                   tail='[proxy.routing]\nstatic = { carol = "target" }')  # fmt: skip
    with ProxyThread(plan) as proxy:
        assert proxy.ctx is not None
        old_alice = append_through(ports["imap"], "alice", "alice-secret")
        carol = append_through(ports["imap"], "carol", "carol-secret")  # a session on the target side
        assert proxy.call(proxy.ctx.registry.counts) == {
            (Service.IMAP, "legacy"): 1,
            (Service.IMAP, "target"): 1,
        }

        switch_wave(proxy.plan, "pilot")
        proxy.poll()
        new_alice = append_through(ports["imap"], "alice", "alice-secret")
        assert proxy.call(proxy.ctx.registry.counts) == {
            (Service.IMAP, "legacy"): 1,
            (Service.IMAP, "target"): 2,
        }
        # No grace period in this plan: the session opened before the switch stays on the legacy.
        old_alice.append("INBOX", None, None, MESSAGE)
        assert old_alice.noop()[0] == "OK" and carol.noop()[0] == "OK"
        for client in (old_alice, carol, new_alice):
            client.logout()
    assert count_in_inbox(legacy, "alice") == 2
    assert count_in_inbox(target, "alice@tenant.example") == 1


def test_a_moved_session_past_a_bulk_transfer_is_still_told_bye(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    """A large FETCH moves the relay to zero-copy (splice) on plain legs; the goodbye must still come."""
    plan, ports = write_proxy_plan(
        tmp_path, legacy, target, target_extra=SUFFIX, proxy_extra="grace_seconds = 0.2"
    )
    big = b"Subject: big\r\n\r\n" + b"x" * 76 + b"\r\n"
    big = big * 8000  # ~600 KB: reads of 64 KB and more
    with ProxyThread(plan) as proxy:
        alice = Raw(ports["imap"])
        alice.send(b"a LOGIN alice alice-secret\r\n")
        assert alice.until(b"a")[-1].startswith(b"a OK")
        alice.send(b"b APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
        assert alice.until(b"b")[-1].startswith(b"b OK")
        alice.send(b"c SELECT INBOX\r\n")
        assert alice.until(b"c")[-1].startswith(b"c OK")
        alice.send(b"d FETCH 1:* BODY.PEEK[]\r\n")
        fetched = alice.until(b"d")
        assert fetched[-1].startswith(b"d OK") and sum(len(x) for x in fetched) > len(big)
        switch_wave(proxy.plan, "pilot")
        proxy.poll()
        assert (
            alice.line() == b"* BYE [UNAVAILABLE] Your mailbox moved to another server; please reconnect.\r\n"
        )
        assert alice.line() == b""
        alice.close()


def test_after_the_grace_period_moved_sessions_are_told_bye_and_others_stay(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports = write_proxy_plan(
        tmp_path, legacy, target, target_extra=SUFFIX, proxy_extra="grace_seconds = 0.2"
    )
    with ProxyThread(plan) as proxy:
        assert proxy.ctx is not None
        alice = Raw(ports["imap"])
        alice.send(b"a LOGIN alice alice-secret\r\n")
        assert alice.until(b"a")[-1].startswith(b"a OK")
        bob = imaplib.IMAP4("127.0.0.1", ports["imap"])
        bob.login("bob", "bob-secret")
        switch_wave(proxy.plan, "pilot")
        proxy.poll()
        # The grace period passes; then the proxy says goodbye and closes.
        assert (
            alice.line() == b"* BYE [UNAVAILABLE] Your mailbox moved to another server; please reconnect.\r\n"
        )
        assert alice.line() == b""
        alice.close()
        assert bob.noop()[0] == "OK"  # bob's wave didn't switch
        counts = proxy.ctx.registry.counts
        assert eventually(lambda: proxy.call(counts), {(Service.IMAP, "legacy"): 1}) == {
            (Service.IMAP, "legacy"): 1
        }
        bob.logout()


def test_a_logout_and_half_close_right_behind_the_login_reach_the_backend(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    """What the client sent behind its login, and its end of file, go to the backend once the relay
    takes the connection over; a half-close before login ends the session after its answers."""
    plan, ports = write_proxy_plan(tmp_path, legacy, target)
    with ProxyThread(plan):
        with socket.create_connection(("127.0.0.1", ports["imap"]), timeout=10) as raw:
            file = raw.makefile("rb")
            assert file.readline().startswith(b"* OK")
            raw.sendall(b"a LOGIN bob bob-secret\r\nz LOGOUT\r\n")
            raw.shutdown(socket.SHUT_WR)
            lines = file.read().split(b"\r\n")
            assert lines[0].startswith(b"a OK")
            assert lines[1].startswith(b"* BYE") and lines[2].startswith(b"z OK Logout completed")
        with socket.create_connection(("127.0.0.1", ports["imap"]), timeout=10) as raw:
            file = raw.makefile("rb")
            assert file.readline().startswith(b"* OK")
            raw.sendall(b"a NOOP\r\nb NOOP")  # the second line never ends
            raw.shutdown(socket.SHUT_WR)
            assert file.read() == b"a OK NOOP completed.\r\n"

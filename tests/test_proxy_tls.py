"""TLS through the routing proxy: STARTTLS and implicit TLS to clients with the plan's certificates (the
right one per SNI name), the STARTTLS injection refused, and verified TLS to the backends."""

from __future__ import annotations

import imaplib
import poplib
import socket
import ssl
from pathlib import Path

import pytest
from conftest import DovecotFactory
from proxy_harness import QUICK_FAILURES, USERS, ProxyThread, Recorder, write_proxy_plan
from servers.dovecot import DovecotServer
from servers.process import free_ports
from servers.tlsca import ThrowawayCA

from runners.proxy.contracts import Outcome


@pytest.fixture
def legacy(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory(USERS, extra_conf=QUICK_FAILURES)


@pytest.fixture
def target(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory(USERS, extra_conf=QUICK_FAILURES)


def tls_plan(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer, tail: str = "", keys: str = ""
) -> tuple[Path, dict[str, int], Path]:
    ca = ThrowawayCA(tmp_path / "ca")
    imap = ca.issue("imap", days=30, dns=("imap.example.test", "localhost"))
    pop = ca.issue("pop", days=30, dns=("pop.example.test",))
    imaps, pop3s = free_ports(2)
    extra = f"""imaps_port = {imaps}
pop3s_port = {pop3s}
{keys}

[[proxy.certificates]]
cert = "{imap.cert}"
key = "{imap.key}"
names = ["imap.example.test", "localhost"]

[[proxy.certificates]]
cert = "{pop.cert}"
key = "{pop.key}"
names = ["pop.example.test"]
"""
    plan, ports = write_proxy_plan(tmp_path / "plan", legacy, target, proxy_extra=extra, tail=tail)
    return plan, {**ports, "imaps": imaps, "pop3s": pop3s}, ca.ca_file


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def certificate_names(port: int, ca_file: Path, server_name: str) -> set[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context(ca_file).wrap_socket(raw, server_hostname=server_name) as tls:
            cert = tls.getpeercert()
            assert tls.recv(100).startswith(b"* OK")
    assert cert is not None
    return {value for kind, value in cert["subjectAltName"] if kind == "DNS"}  # type: ignore[misc]


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_starttls_and_implicit_tls_with_the_certificate_of_the_name_asked_for(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer, uvloop: bool
) -> None:
    plan, ports, ca_file = tls_plan(tmp_path, legacy, target)
    with ProxyThread(plan, uvloop=uvloop):
        client = imaplib.IMAP4("127.0.0.1", ports["imap"])
        assert "STARTTLS" in client.capabilities
        client.starttls(ssl_context=client_context(ca_file))
        assert "STARTTLS" not in client.capabilities
        assert client.login("alice", "alice-secret")[0] == "OK"
        client.logout()

        assert certificate_names(ports["imaps"], ca_file, "pop.example.test") == {"pop.example.test"}
        assert certificate_names(ports["imaps"], ca_file, "imap.example.test") == {
            "imap.example.test",
            "localhost",
        }
        client = imaplib.IMAP4_SSL("localhost", ports["imaps"], ssl_context=client_context(ca_file))
        assert client.login("bob", "bob-secret")[0] == "OK"
        client.logout()

        pop = poplib.POP3("127.0.0.1", ports["pop3"])
        assert "STLS" in pop.capa()
        pop.stls(context=client_context(ca_file))
        pop.user("alice")
        assert pop.pass_("alice-secret").startswith(b"+OK")
        pop.quit()
        pop = poplib.POP3_SSL("localhost", ports["pop3s"], context=client_context(ca_file))
        pop.user("bob")
        assert pop.pass_("bob-secret").startswith(b"+OK")
        pop.quit()


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_commands_pipelined_behind_starttls_are_discarded(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer, uvloop: bool
) -> None:
    plan, ports, ca_file = tls_plan(tmp_path, legacy, target)
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder], uvloop=uvloop):
        for port, starttls, injected, after, answer in (
            (
                ports["imap"],
                b"a STARTTLS\r\n",
                b"b LOGIN alice alice-secret\r\n",
                b"c NOOP\r\n",
                b"c OK NOOP",
            ),
            (
                ports["pop3"],
                b"STLS\r\n",
                b"USER alice\r\nPASS alice-secret\r\n",
                b"CAPA\r\n",
                b"+OK Capability",
            ),
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.recv(1000)  # the greeting
                raw.sendall(starttls + injected)  # one packet: the classic injection
                reply = b""
                while not reply.endswith(b"\r\n"):
                    reply += raw.recv(1)
                assert b"Begin TLS" in reply
                with client_context(ca_file).wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(after)
                    assert tls.recv(1000).startswith(answer)  # the injected commands got no answer
    assert recorder.events == []  # and no login happened


def test_backends_over_starttls_and_implicit_tls_are_verified(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer, dovecot_factory: DovecotFactory
) -> None:
    secure = dovecot_factory(
        {"carol": "carol-secret", "dave": "dave-secret"}, tls=True, extra_conf=QUICK_FAILURES
    )
    tail = f"""
[proxy.backends.starttls]
imap = "127.0.0.1:{secure.imap_port}"
imap_tls = "starttls"
pop3 = "127.0.0.1:{secure.pop3_port}"
pop3_tls = "starttls"
ca_file = "{secure.ca_file}"

[proxy.backends.implicit]
imap = "127.0.0.1:{secure.imaps_port}"
imap_tls = "implicit"
ca_file = "{secure.ca_file}"

[proxy.backends.untrusted]
imap = "127.0.0.1:{secure.imaps_port}"
imap_tls = "implicit"

[proxy.routing]
static = {{ carol = "starttls", dave = "implicit", erin = "untrusted" }}
"""
    plan, ports = write_proxy_plan(tmp_path, legacy, target, tail=tail)
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder]):
        for login, password in (("carol", "carol-secret"), ("dave", "dave-secret")):
            client = imaplib.IMAP4("127.0.0.1", ports["imap"])
            assert client.login(login, password)[0] == "OK"
            assert client.select("INBOX")[0] == "OK"
            client.logout()
        pop = poplib.POP3("127.0.0.1", ports["pop3"])
        pop.user("carol")
        assert pop.pass_("carol-secret").startswith(b"+OK")
        pop.quit()
        client = imaplib.IMAP4("127.0.0.1", ports["imap"])
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            client.login("erin", "erin-secret")
        client.logout()
    outcomes = [(e.login, e.outcome) for e, _ in recorder.events]
    assert outcomes == [("carol", Outcome.ACCEPTED), ("dave", Outcome.ACCEPTED), ("carol", Outcome.ACCEPTED),
                        ("erin", Outcome.UNAVAILABLE)]  # fmt: skip
    assert "certificate not trusted" in recorder.events[-1][0].detail


def test_logins_in_clear_are_refused_when_the_plan_says_never(
    tmp_path: Path, legacy: DovecotServer, target: DovecotServer
) -> None:
    plan, ports, ca_file = tls_plan(tmp_path, legacy, target, keys='plaintext_logins = "never"')
    recorder = Recorder()
    with ProxyThread(plan, observers=[recorder]):
        client = imaplib.IMAP4("127.0.0.1", ports["imap"])
        assert "LOGINDISABLED" in client.capabilities and "AUTH=PLAIN" not in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match=r"\[PRIVACYREQUIRED\]"):
            client.login("alice", "alice-secret")
        client.starttls(ssl_context=client_context(ca_file))
        assert "AUTH=PLAIN" in client.capabilities
        assert client.login("alice", "alice-secret")[0] == "OK"
        client.logout()
        pop = poplib.POP3("127.0.0.1", ports["pop3"])
        assert "USER" not in pop.capa()
        with pytest.raises(poplib.error_proto, match=r"Plaintext authentication disallowed"):
            pop.user("alice")
        pop.stls(context=client_context(ca_file))
        pop.user("alice")
        assert pop.pass_("alice-secret").startswith(b"+OK")
        pop.quit()
    assert [(e.login, e.outcome) for e, _ in recorder.events] == [("alice", Outcome.ACCEPTED)] * 2

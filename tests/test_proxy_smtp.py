"""The proxy's SMTP side against real Exim backends (legacy and target): submission and port 25.

Real clients only: ``smtplib`` for what a mail client does, a raw socket for what an attacker does.
The proxy runs in this process (tests/proxy_smtp_lab.py ``ProxyThread``); the backends are private
Exims on loopback that deliver into Maildirs the tests read.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import smtplib
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from proxy_smtp_lab import (
    MailHub,
    ProxyThread,
    RecordingObserver,
    StaticRouter,
    client_tls,
    smtp_backend,
    wait_for,
)
from servers.process import HOST, free_ports
from servers.smtp import find_exim
from servers.tlsca import ThrowawayCA

from runners.plan.proxy_smtp_options import ProxySmtpSettings
from runners.proxy.contracts import Outcome, ProxyBackend, TlsMode

LEGACY_USERS = {"alice@legacy.test": "alice-Secret-1"}
TARGET_USERS = {"bob@target.test": "bob-Secret-22"}
RECIPIENTS = {
    "alice@legacy.test": "legacy", "carol@example.test": "legacy",
    "bob@target.test": "target", "dave@example.test": "target", "ghost@example.test": "target",
}  # fmt: skip
MESSAGE = b"From: x@sender.test\r\nSubject: hello\r\n\r\nThe body.\r\n"
SETTINGS = ProxySmtpSettings(backend_timeout_seconds=10.0, backend_data_timeout_seconds=30.0,
                             client_timeout_seconds=30.0)  # fmt: skip


@dataclass
class Lab:
    legacy: MailHub
    target: MailHub
    backends: dict[str, ProxyBackend]
    ca_file: Path
    proxy_tls: ssl.SSLContext

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if find_exim() is None:
        pytest.fail("exim is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    ca = ThrowawayCA(tmp_path_factory.mktemp("smtp-ca"))
    legacy = MailHub(mailboxes=["alice@legacy.test", "carol@example.test"], users=LEGACY_USERS,
                     mechanisms=("LOGIN",), hostname="legacy.cutover.test")  # fmt: skip
    target = MailHub(mailboxes=["bob@target.test", "dave@example.test"], users=TARGET_USERS,
                     tls=ca.issue("target", days=30), hostname="target.cutover.test")  # fmt: skip
    started: list[MailHub] = []
    try:
        for hub in (legacy, target):
            started.append(hub.start())
        backends = {
            "legacy": smtp_backend("legacy", legacy.port, tls=TlsMode.NONE, login_suffix="@legacy.test"),
            "target": smtp_backend("target", target.port, tls=TlsMode.STARTTLS, ca_file=str(ca.ca_file),
                                   login_suffix="@target.test"),
        }  # fmt: skip
        yield Lab(legacy, target, backends, ca.ca_file, client_tls(ca.issue("proxy", days=30)))
    finally:
        for hub in started:
            print(f"--- exim log ({hub.root}) ---\n{hub.log_text()}")
            hub.stop()


ProxyFactory = Callable[..., ProxyThread]


@pytest.fixture
def start_proxy(lab: Lab) -> Iterator[ProxyFactory]:
    running: list[ProxyThread] = []

    def start(settings: ProxySmtpSettings = SETTINGS, backends: dict[str, ProxyBackend] | None = None,
              observers: tuple[RecordingObserver, ...] = ()) -> ProxyThread:  # fmt: skip
        chosen = backends or lab.backends
        router = StaticRouter(chosen, users={"alice": "legacy", "bob": "target"}, recipients=RECIPIENTS)
        proxy = ProxyThread()
        running.append(proxy)
        return proxy.start(router=router, backends=chosen, settings=settings, tls=lab.proxy_tls,
                           observers=observers)  # fmt: skip

    yield start
    for proxy in running:
        proxy.stop()


class Raw:
    """A raw SMTP client for the nasty cases: send any bytes, read whole replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=20)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            lines.append(line.decode()[4:].rstrip())
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def ask(self, data: bytes) -> tuple[int, str]:
        self.send(data)
        return self.reply()

    def starttls(self, context: ssl.SSLContext) -> None:
        self.file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=HOST)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _plain(login: str, password: str) -> str:
    return base64.b64encode(f"\0{login}\0{password}".encode()).decode()


def _everything_logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr()
    return caplog.text + out.out + out.err


# -- submission --


def test_submission_starttls_auth_plain_goes_to_the_users_backend(
    lab: Lab, start_proxy: ProxyFactory
) -> None:
    observer = RecordingObserver()
    proxy = start_proxy(observers=(observer,))
    with smtplib.SMTP(HOST, proxy.ports["submission"], timeout=20) as client:
        client.starttls(context=lab.client_context())
        client.login("bob", TARGET_USERS["bob@target.test"])
        refused = client.sendmail("bob@target.test", ["zed@far.test"], MESSAGE)
    assert refused == {}
    assert wait_for(lambda: lab.target.messages("zed@far.test"))
    assert b"The body." in lab.target.messages("zed@far.test")[-1]
    [(event, password)] = observer.events
    assert event.outcome is Outcome.ACCEPTED and event.login == "bob"
    assert event.route is not None and event.route.backend == "target"
    assert event.route.backend_login == "bob@target.test"
    assert password is not None and password.reveal() == TARGET_USERS["bob@target.test"]


def test_submission_implicit_tls_auth_login_to_a_login_only_backend(
    lab: Lab, start_proxy: ProxyFactory
) -> None:
    proxy = start_proxy()
    with smtplib.SMTP_SSL(
        HOST, proxy.ports["submissions"], timeout=20, context=lab.client_context()
    ) as client:
        client.ehlo()
        client.user, client.password = "alice", LEGACY_USERS["alice@legacy.test"]
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235
        client.sendmail("alice@legacy.test", ["yan@far.test"], MESSAGE)
    assert wait_for(lambda: lab.legacy.messages("yan@far.test"))
    assert not lab.target.messages("yan@far.test")


def test_a_wrong_password_gets_the_backends_words_and_is_never_shown(
    lab: Lab, start_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    observer = RecordingObserver()
    proxy = start_proxy(observers=(observer,))
    wrong = "not-Bobs-password-77"
    with smtplib.SMTP(HOST, proxy.ports["submission"], timeout=20) as client:
        client.starttls(context=lab.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            client.login("bob", wrong)
    assert failed.value.smtp_code == 535
    assert b"Incorrect authentication data" in failed.value.smtp_error  # Exim's own words
    assert observer.events  # smtplib tries PLAIN, then LOGIN: one event each
    for event, password in observer.events:
        assert event.outcome is Outcome.REJECTED and password is None
        assert "Incorrect authentication data" in event.detail
    assert wrong not in repr(observer.events) + _everything_logged(caplog, capsys)


def test_too_many_failed_logins_end_the_session(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy(replace(SETTINGS, max_auth_failures=2))
    client = Raw(proxy.ports["submission"])
    client.reply()
    client.ask(b"EHLO me\r\n")
    assert client.ask(b"STARTTLS\r\n")[0] == 220
    client.starttls(lab.client_context())
    client.ask(b"EHLO me\r\n")
    assert client.ask(f"AUTH PLAIN {_plain('bob', 'wrong-1')}\r\n".encode())[0] == 535
    assert client.ask(f"AUTH PLAIN {_plain('bob', 'wrong-2')}\r\n".encode())[0] == 535
    assert client.reply()[0] == 421
    client.close()


def test_no_auth_before_tls_unless_the_plan_allows_loopback(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy(replace(SETTINGS, plain_auth_from_loopback=False))
    client = Raw(proxy.ports["submission"])
    client.reply()
    code, ehlo = client.ask(b"EHLO me\r\n")
    assert code == 250 and "STARTTLS" in ehlo and "AUTH" not in ehlo
    code, text = client.ask(f"AUTH PLAIN {_plain('bob', TARGET_USERS['bob@target.test'])}\r\n".encode())
    assert (code, text[:6]) == (538, "5.7.11")
    assert client.ask(b"MAIL FROM:<bob@target.test>\r\n")[0] == 530
    client.close()


def test_plain_auth_from_a_loopback_client_when_allowed(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy()  # plain_auth_from_loopback defaults to true
    with smtplib.SMTP(HOST, proxy.ports["submission"], timeout=20) as client:
        client.login("alice", LEGACY_USERS["alice@legacy.test"])
        client.sendmail("alice@legacy.test", ["xia@far.test"], MESSAGE)
    assert wait_for(lambda: lab.legacy.messages("xia@far.test"))


def test_malformed_sasl_and_cancel_are_answered_not_fatal(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy()
    client = Raw(proxy.ports["submission"])
    client.reply()
    client.ask(b"EHLO me\r\n")
    assert client.ask(b"AUTH PLAIN !!!not-base64\r\n")[0] == 501
    assert client.ask(b"AUTH LOGIN\r\n") == (334, "VXNlcm5hbWU6")
    assert client.ask(b"*\r\n")[0] == 501
    assert client.ask(b"AUTH CRAM-MD5\r\n")[0] == 504
    assert client.ask(b"AUTH PLAIN\r\n")[0] == 334
    assert client.ask(base64.b64encode(b"only-one-part") + b"\r\n")[0] == 501
    assert client.ask(b"NOOP\r\n")[0] == 250
    client.close()


def _dead_backends(lab: Lab, port: int) -> dict[str, ProxyBackend]:
    return {
        **lab.backends,
        "target": smtp_backend("target", port, tls=TlsMode.NONE, login_suffix="@target.test"),
    }


def test_a_backend_that_is_down_is_454_during_auth(lab: Lab, start_proxy: ProxyFactory) -> None:
    observer = RecordingObserver()
    (nobody,) = free_ports(1)
    proxy = start_proxy(backends=_dead_backends(lab, nobody), observers=(observer,))
    with smtplib.SMTP(HOST, proxy.ports["submission"], timeout=20) as client:
        client.starttls(context=lab.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            client.login("bob", TARGET_USERS["bob@target.test"])
    assert failed.value.smtp_code == 454 and failed.value.smtp_error.startswith(b"4.3.0")
    assert observer.events
    for event, password in observer.events:
        assert event.outcome is Outcome.UNAVAILABLE and password is None


def test_a_backend_that_never_answers_is_454_after_the_backend_timeout(
    lab: Lab, start_proxy: ProxyFactory
) -> None:
    silent = socket.create_server((HOST, 0))  # accepts (the kernel does), never says 220
    try:
        port = silent.getsockname()[1]
        proxy = start_proxy(
            replace(SETTINGS, backend_timeout_seconds=0.3), backends=_dead_backends(lab, port)
        )
        client = Raw(proxy.ports["submission"])
        client.reply()
        client.ask(b"EHLO me\r\n")
        code, text = client.ask(f"AUTH PLAIN {_plain('bob', 'whatever-pw')}\r\n".encode())
        assert (code, text[:5]) == (454, "4.3.0")
        client.close()
    finally:
        silent.close()


def test_commands_pipelined_behind_starttls_are_discarded(lab: Lab, start_proxy: ProxyFactory) -> None:
    observer = RecordingObserver()
    proxy = start_proxy(observers=(observer,))
    for port in (proxy.ports["submission"], proxy.ports["smtp"]):
        client = Raw(port)
        client.reply()
        client.ask(b"EHLO me\r\n")
        injected = f"AUTH PLAIN {_plain('bob', TARGET_USERS['bob@target.test'])}\r\nMAIL FROM:<x@y.test>\r\n"
        client.send(b"STARTTLS\r\n" + injected.encode())
        assert client.reply()[0] == 220
        client.starttls(lab.client_context())
        code, text = client.ask(b"EHLO again\r\n")  # the first reply inside TLS answers this, nothing else
        assert code == 250 and text.startswith("cutover-proxy")
        assert client.ask(b"NOOP\r\n")[0] == 250
        client.close()
    assert observer.events == []  # the injected AUTH was never seen


# -- inbound (port 25) --


def test_inbound_mail_goes_to_the_recipients_backend(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy()
    with smtplib.SMTP(HOST, proxy.ports["smtp"], timeout=20) as client:
        refused = client.sendmail("x@sender.test", ["alice@legacy.test", "carol@example.test"], MESSAGE)
    assert refused == {}
    for address in ("alice@legacy.test", "carol@example.test"):
        assert wait_for(lambda a=address: lab.legacy.messages(a))  # type: ignore[misc]
    delivered = lab.legacy.messages("carol@example.test")[-1]
    assert b"by cutover-proxy (cutover proxy) with ESMTP" in delivered  # the proxy's trace header


def test_inbound_unknown_recipients_are_550(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy()
    client = Raw(proxy.ports["smtp"])
    client.reply()
    client.ask(b"EHLO sender.test\r\n")
    assert client.ask(b"MAIL FROM:<x@sender.test>\r\n")[0] == 250
    code, text = client.ask(b"RCPT TO:<nobody@nowhere.test>\r\n")  # no backend knows it
    assert (code, text[:5]) == (550, "5.1.1")
    code, text = client.ask(b"RCPT TO:<ghost@example.test>\r\n")  # routed, but the target has no such user
    assert code == 550 and "no such user here" in text
    assert client.ask(b"DATA\r\n")[0] == 554
    client.close()


def test_without_store_and_forward_other_backends_recipients_are_451(
    lab: Lab, start_proxy: ProxyFactory
) -> None:
    proxy = start_proxy()
    with smtplib.SMTP(HOST, proxy.ports["smtp"], timeout=20) as client:
        refused = client.sendmail("x@sender.test", ["alice@legacy.test", "bob@target.test"], MESSAGE)
        assert list(refused) == ["bob@target.test"] and refused["bob@target.test"][0] == 451
        assert client.sendmail("x@sender.test", ["bob@target.test"], MESSAGE) == {}  # the sender's retry
    assert wait_for(lambda: lab.target.messages("bob@target.test"))
    assert wait_for(lambda: lab.legacy.messages("alice@legacy.test"))


def test_with_store_and_forward_a_mixed_transaction_reaches_both(
    lab: Lab, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    proxy = start_proxy(replace(SETTINGS, store_and_forward=True, spool_dir=spool))
    before = len(lab.target.messages("dave@example.test")), len(lab.legacy.messages("carol@example.test"))
    with smtplib.SMTP(HOST, proxy.ports["smtp"], timeout=20) as client:
        refused = client.sendmail("x@sender.test", ["carol@example.test", "dave@example.test"], MESSAGE)
    assert refused == {}
    assert wait_for(lambda: len(lab.target.messages("dave@example.test")) == before[0] + 1)
    assert wait_for(lambda: len(lab.legacy.messages("carol@example.test")) == before[1] + 1)
    assert wait_for(lambda: not list((spool / "queue").iterdir()))  # delivered: nothing left waiting


def test_the_sender_of_a_refused_recipient_gets_a_delivery_status_notice(
    lab: Lab, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    (nobody,) = free_ports(1)
    backends = _dead_backends(lab, nobody)  # the target is down while the mail comes in
    spool = tmp_path / "spool"
    settings = replace(SETTINGS, store_and_forward=True, spool_dir=spool, bounce_via="legacy",
                       hostname="mx.cutover.test", retry_first_seconds=0.1, retry_max_seconds=0.1)  # fmt: skip
    proxy = start_proxy(settings, backends=backends)
    before = len(lab.legacy.messages("carol@example.test"))
    with smtplib.SMTP(HOST, proxy.ports["smtp"], timeout=20) as client:
        # ghost is routed to the target, accepted on the router's word and refused at delivery
        # (5.1.1) once the target is back; dave is delivered.
        refused = client.sendmail("carol@example.test", ["ghost@example.test", "dave@example.test"], MESSAGE)
        assert refused == {}
        # A notice is never answered with a notice: no sender, no notice (kept in failed/ only).
        assert client.sendmail("", ["ghost@example.test"], MESSAGE) == {}
    backends["target"] = lab.backends["target"]  # the target comes back (the proxy holds this mapping)
    assert wait_for(lambda: len(lab.legacy.messages("carol@example.test")) == before + 1)
    notice = email.message_from_bytes(
        lab.legacy.messages("carol@example.test")[-1], policy=email.policy.default
    )
    assert notice["Return-path"] == "<>" and notice["Auto-Submitted"] == "auto-replied"
    assert (
        notice.get_content_type() == "multipart/report"
        and notice.get_param("report-type") == "delivery-status"
    )
    human, status, header = notice.iter_parts()
    assert "<ghost@example.test>: 550 5.1.1 no such user here" in human.get_content()
    fields = [dict(block.items()) for block in status.get_payload()]
    assert fields[0]["Reporting-MTA"] == "dns; mx.cutover.test"
    assert fields[1:] == [{"Final-Recipient": "rfc822; ghost@example.test", "Action": "failed", "Status": "5.1.1",
                           "Diagnostic-Code": "smtp; 550 5.1.1 no such user here"}]  # fmt: skip
    assert header.get_content_type() == "text/rfc822-headers" and "Subject: hello" in header.get_content()
    assert b"The body." not in lab.legacy.messages("carol@example.test")[-1]  # the body stays in failed/
    assert wait_for(lambda: len(list((spool / "failed").glob("*.why"))) == 2)
    assert wait_for(lambda: not list((spool / "queue").iterdir()))  # the notice was delivered too
    reasons = [json.loads(p.read_text()) for p in (spool / "failed").glob("*.why")]
    assert sum("notice" in why for why in reasons) == 1  # carol's message; the null sender's has none


def test_size_limits_are_announced_and_enforced(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy(replace(SETTINGS, max_message_bytes=4096))
    with smtplib.SMTP(HOST, proxy.ports["smtp"], timeout=20) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "4096"
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:
            client.sendmail("x@sender.test", ["alice@legacy.test"], MESSAGE, mail_options=["SIZE=5000"])
        assert declared.value.smtp_code == 552
    client = Raw(proxy.ports["smtp"])
    client.reply()
    client.ask(b"EHLO sender.test\r\n")
    client.ask(b"MAIL FROM:<x@sender.test>\r\n")
    client.ask(b"RCPT TO:<carol@example.test>\r\n")
    assert client.ask(b"DATA\r\n")[0] == 354
    client.send(b"Subject: big\r\n\r\n" + b"x" * 900 + b"\r\n" + (b"y" * 900 + b"\r\n") * 8)
    code, text = client.ask(b".\r\n")
    assert (code, text[:5]) == (552, "5.3.4")
    assert client.ask(b"NOOP\r\n")[0] == 250
    client.close()


def test_overlong_lines_bare_newlines_and_too_many_recipients(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy(replace(SETTINGS, max_recipients=2))
    client = Raw(proxy.ports["smtp"])
    client.reply()
    assert client.ask(b"EHLO " + b"a" * 5000 + b"\r\n")[0] == 500  # overlong command line
    client.ask(b"EHLO sender.test\r\n")
    client.ask(b"MAIL FROM:<x@sender.test>\r\n")
    assert client.ask(b"RCPT TO:<alice@legacy.test>\r\n")[0] == 250
    assert client.ask(b"RCPT TO:<carol@example.test>\r\n")[0] == 250
    assert client.ask(b"RCPT TO:<alice@legacy.test>\r\n") == (452, "4.5.3 too many recipients")
    assert client.ask(b"DATA\r\n")[0] == 354
    # SMTP smuggling: a bare-LF "end of data" and a second transaction inside the first message.
    smuggled = b"Subject: one\r\n\r\nhello\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<alice@legacy.test>\r\n"
    client.send(smuggled)
    code, text = client.ask(b".\r\n")
    assert (code, text[:5]) == (554, "5.6.0")
    client.ask(b"MAIL FROM:<x@sender.test>\r\n")
    client.ask(b"RCPT TO:<carol@example.test>\r\n")
    client.ask(b"DATA\r\n")
    client.send(b"Subject: long\r\n\r\n" + b"z" * 1200 + b"\r\n")
    assert client.ask(b".\r\n")[0] == 500
    assert client.ask(b"QUIT\r\n")[0] == 221
    client.close()
    assert not any(b"evil@x.test" in m for m in lab.legacy.messages("alice@legacy.test"))
    assert not any(b"z" * 1200 in m for m in lab.legacy.messages("carol@example.test"))


def test_a_pipelined_transaction_is_answered_in_order(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy()
    client = Raw(proxy.ports["smtp"])
    client.reply()
    assert "PIPELINING" in client.ask(b"EHLO sender.test\r\n")[1]
    client.send(b"MAIL FROM:<x@sender.test>\r\nRCPT TO:<nobody@nowhere.test>\r\n"
                b"RCPT TO:<carol@example.test>\r\nDATA\r\n")  # fmt: skip
    assert [client.reply()[0] for _ in range(4)] == [250, 550, 250, 354]
    assert client.ask(b"Subject: piped\r\n\r\npipelined body\r\n.\r\n")[0] == 250
    client.close()
    assert wait_for(lambda: any(b"pipelined body" in m for m in lab.legacy.messages("carol@example.test")))


def test_the_proxy_survives_garbage(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy()
    for port in (proxy.ports["smtp"], proxy.ports["submission"]):
        client = Raw(port)
        client.reply()
        client.send(
            b"\x00\xff\r\nGET / HTTP/1.1\r\n" + b"\x1b[2J" * 100 + b"\r\nRCPT\r\nMAIL FROM:<<>>\r\nDATA\r\n"
        )
        codes = [client.reply()[0] for _ in range(6)]
        assert all(code >= 500 for code in codes)
        client.close()
    assert Raw(proxy.ports["smtp"]).reply()[0] == 220  # still serving


class _EchoingBackend(socketserver.StreamRequestHandler):
    """A hostile backend: its refusal repeats what it was sent, the password with it."""

    def handle(self) -> None:
        self.wfile.write(b"220 echo ESMTP\r\n")
        while line := self.rfile.readline():
            words = line.decode().strip()
            if words.upper().startswith("EHLO"):
                self.wfile.write(b"250-echo\r\n250 AUTH PLAIN LOGIN\r\n")
            elif words.upper().startswith("AUTH PLAIN "):
                blob = words.split()[2]
                password = base64.b64decode(blob).split(b"\0")[2].decode()
                self.wfile.write(
                    f"535-5.7.8 you sent {words}\r\n535 5.7.8 and {password} is wrong\r\n".encode()
                )
            else:
                self.wfile.write(b"221 bye\r\n")
                return


def test_a_backend_that_echoes_the_password_is_scrubbed(
    lab: Lab, start_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "echoed-Secret-404"
    with socketserver.ThreadingTCPServer((HOST, 0), _EchoingBackend) as echo:
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        observer = RecordingObserver()
        proxy = start_proxy(backends=_dead_backends(lab, echo.server_address[1]), observers=(observer,))
        client = Raw(proxy.ports["submission"])
        client.reply()
        client.ask(b"EHLO me\r\n")
        code, text = client.ask(f"AUTH PLAIN {_plain('bob', secret)}\r\n".encode())
        client.close()
        echo.shutdown()
    # (other tests' registered secrets may mask more words: only the password's masks are asserted)
    assert code == 535 and "you sent AUTH PLAIN ********" in text and "and ******** is" in text
    [(event, _)] = observer.events
    shown = text + event.detail + _everything_logged(caplog, capsys)
    assert secret not in shown and _plain("bob@target.test", secret) not in shown


def test_a_silent_client_is_told_421_and_dropped(lab: Lab, start_proxy: ProxyFactory) -> None:
    proxy = start_proxy(replace(SETTINGS, client_timeout_seconds=0.2))
    client = Raw(proxy.ports["smtp"])
    assert client.reply()[0] == 220
    assert client.reply() == (421, "4.4.2 idle too long, closing")  # said nothing: the proxy gives up
    assert client.file.readline() == b""
    client.close()


def test_with_store_and_forward_mail_for_a_backend_that_is_down_is_spooled(
    lab: Lab, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    (nobody,) = free_ports(1)
    spool = tmp_path / "spool"
    settings = replace(SETTINGS, store_and_forward=True, spool_dir=spool, retry_first_seconds=3600.0)
    proxy = start_proxy(settings, backends=_dead_backends(lab, nobody))
    with smtplib.SMTP(HOST, proxy.ports["smtp"], timeout=20) as client:
        client.ehlo()
        client.mail("x@sender.test")
        assert client.rcpt("dave@example.test")[0] == 250
        code, text = client.data(MESSAGE)
    assert code == 250 and text.startswith(b"2.0.0 queued as ")
    [spooled] = (spool / "queue").glob("*.msg")  # on disk, fsync'd, before the 250
    assert text.decode().endswith(spooled.stem)
    assert b"The body." in spooled.read_bytes()


def test_a_recipient_refused_at_delivery_is_kept_in_failed_with_the_backends_words(
    lab: Lab, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    (nobody,) = free_ports(1)
    backends = _dead_backends(lab, nobody)  # the target is down while the mail comes in
    spool = tmp_path / "spool"
    settings = replace(SETTINGS, store_and_forward=True, spool_dir=spool, retry_first_seconds=0.1,
                       retry_max_seconds=0.1)  # fmt: skip
    proxy = start_proxy(settings, backends=backends)
    with smtplib.SMTP(HOST, proxy.ports["smtp"], timeout=20) as client:
        # ghost is routed to the target, which can't be asked now: accepted on the router's word.
        assert client.sendmail("x@sender.test", ["ghost@example.test", "dave@example.test"], MESSAGE) == {}
    backends["target"] = lab.backends["target"]  # the target comes back (the proxy holds this mapping)
    assert wait_for(lambda: list((spool / "failed").glob("*.why")))
    [why] = (spool / "failed").glob("*.why")
    reasons = why.read_text()
    assert "ghost@example.test" in reasons and "no such user here" in reasons
    assert "dave@example.test" not in reasons
    assert wait_for(lambda: any(b"The body." in m for m in lab.target.messages("dave@example.test")))
    # The queue entry goes once its last backend is recorded, a moment after the delivery itself.
    assert wait_for(lambda: not list((spool / "queue").iterdir()))

"""The whole proxy as `cutover proxy` assembles it from a plan: the SMTP side (submission and inbound)
listens beside IMAP and POP3 and routes by the same router, so a wave's switch moves a user's mail
submission and their inbound mail to the target at once. Real Exims on both sides."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxy_harness import ProxyThread, switch_wave
from proxy_smtp_lab import MailHub, wait_for
from servers.process import HOST, free_ports
from servers.smtp import find_exim

from runners.plan.loader import load_plan

USERS = {"alice": "alice-Secret-1"}
MESSAGE = b"From: alice@example.test\r\nSubject: through the front door\r\n\r\nHello.\r\n"


@pytest.fixture
def hubs() -> Iterator[tuple[MailHub, MailHub]]:
    if find_exim() is None:
        pytest.fail("exim is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    legacy = MailHub(mailboxes=["alice@example.test"], users=USERS, hostname="legacy.cutover.test")
    target = MailHub(mailboxes=["alice@example.test"], users=USERS, hostname="target.cutover.test")
    started: list[MailHub] = []
    try:
        for hub in (legacy, target):
            started.append(hub.start())
        yield legacy, target
    finally:
        for hub in started:
            hub.stop()


def _plan(root: Path, legacy: MailHub, target: MailHub) -> tuple[Path, int, int]:
    (root / "mailboxes.csv").write_text("source,target,wave,address\nalice,alice,pilot,alice@example.test\n")
    submission, smtp, unused_source, unused_target = free_ports(4)
    plan = root / "plan.toml"
    plan.write_text(f"""
[source]
type = "imap"
host = "{HOST}"
port = {unused_source}
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:UNUSED_MASTER_PW"

[target]
type = "imap"
host = "{HOST}"
port = {unused_target}
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:UNUSED_MASTER_PW"

[mailboxes]
csv = "mailboxes.csv"

[proxy]
listen = "{HOST}"
submission_port = {submission}
smtp_port = {smtp}

[proxy.backends.legacy]
submission = "{HOST}:{legacy.port}"
submission_tls = "none"
smtp = "{HOST}:{legacy.port}"
smtp_tls = "none"

[proxy.backends.target]
submission = "{HOST}:{target.port}"
submission_tls = "none"
smtp = "{HOST}:{target.port}"
smtp_tls = "none"

[proxy.smtp]
backend_timeout_seconds = 10
""")
    return plan, submission, smtp


def test_a_switch_moves_submission_and_inbound_mail_to_the_target(
    tmp_path: Path, hubs: tuple[MailHub, MailHub]
) -> None:
    legacy, target = hubs
    plan_path, submission, smtp = _plan(tmp_path, legacy, target)
    with ProxyThread(plan_path) as proxy:
        services = sorted({b.listener.service.value for b in proxy.server.bound} if proxy.server else [])
        assert services == ["smtp", "submission"]

        _submit(submission, b"before")
        _deliver(smtp, b"inbound before")
        assert wait_for(lambda: len(legacy.messages("someone@elsewhere.test")) == 1)
        assert wait_for(lambda: len(legacy.messages("alice@example.test")) == 1)
        assert target.messages("alice@example.test") == []

        switch_wave(load_plan(plan_path), "pilot")
        proxy.poll()

        _submit(submission, b"after")
        _deliver(smtp, b"inbound after")
        assert wait_for(lambda: len(target.messages("someone@elsewhere.test")) == 1)
        assert wait_for(lambda: len(target.messages("alice@example.test")) == 1)
        assert b"inbound after" in target.messages("alice@example.test")[0]
        assert len(legacy.messages("alice@example.test")) == 1  # nothing more went to the legacy


def _submit(port: int, marker: bytes) -> None:
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        client.ehlo("client.test")
        client.login("alice", USERS["alice"])
        client.sendmail("alice@example.test", ["someone@elsewhere.test"], MESSAGE + marker + b"\r\n")


def _deliver(port: int, marker: bytes) -> None:
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        client.ehlo("mx.sender.test")
        client.sendmail("sender@world.test", ["alice@example.test"], MESSAGE + marker + b"\r\n")

"""Mail flows (runners/settle/probe.py): a probe through a real new MX (Exim, delivering by LMTP into the
target Dovecot: tests/servers/delivery.py) arrives in the wave's canary, is measured and removed again;
a refusal and a probe that never comes are findings with the servers' words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import make_lab
from servers import imapfill
from servers.delivery import DeliveringMX, LdaRelay
from servers.dovecot import DovecotServer
from servers.process import free_ports
from servers.smtp import find_exim

from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.settle.probe import PROBE_HEADER, probe_mail_flow

CANARY = "alice@example.test"


@pytest.fixture
def mx_factory() -> Iterator[object]:
    if find_exim() is None:
        pytest.fail("exim4 is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    started: list[DeliveringMX] = []
    relays: list[LdaRelay] = []

    def start(target: DovecotServer, **options: object) -> DeliveringMX:
        """Exim for the options' domains, delivering into ``target`` through an LDA relay."""
        relay = LdaRelay(target)
        relays.append(relay)
        mx = DeliveringMX(lmtp_port=relay.port, **options)  # type: ignore[arg-type]
        started.append(mx)
        return mx.start()

    yield start
    for mx in started:
        print(f"--- exim log ({mx.root}) ---\n{mx.log_text()}")
        mx.stop()
    for relay in relays:
        print(f"--- LDA deliveries ---\n{relay.deliveries}")
        relay.stop()


def _plan(
    tmp_path: Path, source: DovecotServer, target: DovecotServer, monkeypatch, canary: str = CANARY
) -> Plan:
    monkeypatch.setenv("SRC_MASTER_PW", source.master_password)
    monkeypatch.setenv("DST_MASTER_PW", target.master_password)
    lab = make_lab(tmp_path / "lab", source, target, mailboxes=(("alice", canary, "pilot"),))
    return load_plan(lab.plan)


def _target(dovecot_factory) -> DovecotServer:
    return dovecot_factory(users={CANARY: "alice-secret"})


def test_the_probe_arrives_through_the_new_mx_is_measured_and_removed(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory, mx_factory, monkeypatch
) -> None:
    target = _target(dovecot_factory)
    imapfill.append(target, CANARY, "INBOX", message("the user's own mail"))
    mx = mx_factory(target=target, domains=("example.test",))
    plan = _plan(tmp_path, source_dovecot, target, monkeypatch)

    result = probe_mail_flow(
        plan, "pilot", mx_host=mx.host, mx_port=mx.port, deadline_seconds=60, poll_seconds=0.05
    )

    assert result.outcome == "arrived", (result.seen, result.smtp)
    print(f"probe delay: {result.delay} s")  # a figure for the report, never asserted
    assert result.canary == CANARY and result.delay is not None and result.delay >= 0
    assert any(line.startswith("S: 250") and "id=" in line for line in result.smtp)  # Exim queued it
    assert result.removed and result.left is None
    inbox = imapfill.folder_snapshot(target, CANARY, master=True)["INBOX"]
    assert [b"the user's own mail" in body for body, _f, _d in inbox] == [True]  # only the probe went


def test_two_probes_never_see_each_other(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory, mx_factory, monkeypatch
) -> None:
    target = _target(dovecot_factory)
    mx = mx_factory(target=target, domains=("example.test",))
    plan = _plan(tmp_path, source_dovecot, target, monkeypatch)
    first = probe_mail_flow(
        plan, "pilot", mx_host=mx.host, mx_port=mx.port, deadline_seconds=60, poll_seconds=0.05
    )
    second = probe_mail_flow(
        plan, "pilot", mx_host=mx.host, mx_port=mx.port, deadline_seconds=60, poll_seconds=0.05
    )
    assert first.outcome == second.outcome == "arrived"
    assert first.token != second.token


def test_the_mx_refusing_the_canarys_domain_is_a_finding_in_its_words(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory, mx_factory, monkeypatch
) -> None:
    target = dovecot_factory(users={"carol@other.test": "x-secret"})
    mx = mx_factory(
        target=target,
        domains=("example.test",),
        refuse=("other.test",),
        refusal="other.test is not hosted here yet",
    )
    plan = _plan(tmp_path, source_dovecot, target, monkeypatch, canary="carol@other.test")

    result = probe_mail_flow(
        plan, "pilot", mx_host=mx.host, mx_port=mx.port, deadline_seconds=5, poll_seconds=0.05
    )

    assert result.outcome == "refused"
    assert result.refusal is not None and result.refusal.startswith("550 ")
    assert "other.test is not hosted here yet" in result.refusal
    assert result.smtp[-2] == "C: RCPT TO:<carol@other.test>"


def test_a_probe_the_mx_accepts_but_never_delivers_is_not_arrived_with_what_was_seen(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory, mx_factory, monkeypatch
) -> None:
    target = _target(dovecot_factory)
    mx = mx_factory(target=target, domains=("example.test",), hold=True)  # a stuck queue
    plan = _plan(tmp_path, source_dovecot, target, monkeypatch)

    result = probe_mail_flow(
        plan, "pilot", mx_host=mx.host, mx_port=mx.port, deadline_seconds=1.0, poll_seconds=0.1
    )

    assert result.outcome == "not arrived"
    assert any(line.startswith("S: 250") and "id=" in line for line in result.smtp)
    assert (
        f"{PROBE_HEADER}: {result.token}" in result.seen
        and "UIDNEXT 1 before the probe, 1 now" in result.seen
    )
    assert not result.removed


def test_an_mx_nobody_listens_on_is_unreachable(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, monkeypatch
) -> None:
    plan = _plan(tmp_path, source_dovecot, target_dovecot, monkeypatch, canary="alice@example.test")
    target_dovecot.add_user(CANARY, "alice-secret")
    result = probe_mail_flow(plan, "pilot", mx_host="127.0.0.1", mx_port=free_ports(1)[0], deadline_seconds=1)
    assert result.outcome == "unreachable"
    assert result.refusal is not None and "refused" in result.refusal.lower()

"""Readiness of an EWS target, against the emulator with a real Dovecot source: Autodiscover, the
service account, impersonation and existence of each mailbox, MailTips sizes and fullness, and the
folder names Exchange would take."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import message
from ews_lab import TARGETS, EmulatorFactory, EwsLab, emulator_factory, ews_config, make_ews_lab
from servers import imapfill
from servers.dovecot import DovecotServer

from checks.model import Finding, Severity, State
from checks.runner import CheckRun, run_checks, select
from lab.ews import Mailbox
from runners.plan.loader import load_plan

__all__ = ["emulator_factory"]

IDS = ("TGT-EWS-031", "TGT-EWS-032", "TGT-EWS-033", "TGT-EWS-034", "TGT-EWS-035")


def run(lab: EwsLab, monkeypatch: pytest.MonkeyPatch) -> CheckRun:
    for name, value in lab.env.items():
        if name in ("SRC_MASTER_PW", "EWS_PW"):
            monkeypatch.setenv(name, value)
    return run_checks(load_plan(lab.plan), select(only=IDS))


def findings(result: CheckRun, check_id: str) -> list[Finding]:
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    assert outcome.state == State.OK, outcome.reason
    return outcome.findings


@pytest.fixture
def source(source_dovecot: DovecotServer) -> DovecotServer:
    imapfill.append(source_dovecot, "alice", "INBOX", message("small"), master=True)
    imapfill.append(source_dovecot, "alice", "INBOX", message("big", "b" * 50_000), master=True)
    for folder in ("Calendar", "Work", "work"):
        imapfill.create_folder(source_dovecot, "alice", folder, master=True)
    imapfill.append(source_dovecot, "bob", "INBOX", message("bob's"), master=True)
    return source_dovecot


def test_a_ready_target_passes_and_names_what_exchange_renames(
    tmp_path: Path, source: DovecotServer, emulator_factory: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = make_ews_lab(tmp_path / "lab", source, emulator_factory(), mailboxes=(("alice", "w"), ("bob", "w")))

    result = run(lab, monkeypatch)

    (domain,) = findings(result, "TGT-EWS-031")
    assert domain.severity == Severity.PASS and domain.observed.endswith("/EWS/Exchange.asmx")
    (auth,) = findings(result, "TGT-EWS-032")
    assert auth.severity == Severity.PASS
    assert {f.object_id: f.severity for f in findings(result, "TGT-EWS-033")} == {
        TARGETS["alice"]: Severity.PASS,
        TARGETS["bob"]: Severity.PASS,
    }
    assert {f.severity for f in findings(result, "TGT-EWS-034")} == {Severity.PASS}
    renamed = {f.key: f for f in findings(result, "TGT-EWS-035") if f.severity == Severity.WARNING}
    assert "Calendar" in renamed and "keeps for itself" in renamed["Calendar"].evidence
    assert {"Work", "work"} & set(renamed)  # one of the two, whichever the source lists second
    assert "case-insensitively" in "".join(f.evidence for k, f in renamed.items() if k.lower() == "work")


def test_missing_mailbox_impersonation_refused_oversize_and_full_are_blockers(
    tmp_path: Path, source: DovecotServer, emulator_factory: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # alice: 20 kB messages at most, and her mailbox full; bob: not a mailbox at all.
    emulator = emulator_factory(
        ews_config(
            {TARGETS["alice"]: Mailbox(max_message_size=20_000, quota_bytes=0)}, impersonate=frozenset({"*"})
        )
    )
    lab = make_ews_lab(tmp_path / "lab", source, emulator, mailboxes=(("alice", "w"), ("bob", "w")))

    result = run(lab, monkeypatch)

    mailboxes = {f.object_id: f for f in findings(result, "TGT-EWS-033")}
    assert mailboxes[TARGETS["alice"]].severity == Severity.PASS
    assert mailboxes[TARGETS["bob"]].severity == Severity.BLOCKER
    assert "ErrorNonExistentMailbox" in mailboxes[TARGETS["bob"]].evidence
    alice = {f.key: f for f in findings(result, "TGT-EWS-034") if f.object_id == TARGETS["alice"]}
    assert alice["full"].severity == Severity.BLOCKER
    assert alice["size"].severity == Severity.BLOCKER and "MaxMessageSize 20,000" in alice["size"].expected


def test_impersonation_refused_and_a_wrong_password_are_blockers(
    tmp_path: Path, source: DovecotServer, emulator_factory: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = emulator_factory(ews_config(impersonate=frozenset({TARGETS["alice"]})))
    lab = make_ews_lab(tmp_path / "lab", source, emulator, mailboxes=(("alice", "w"), ("bob", "w")))
    result = run(lab, monkeypatch)
    bob = next(f for f in findings(result, "TGT-EWS-033") if f.object_id == TARGETS["bob"])
    assert bob.severity == Severity.BLOCKER and "ErrorImpersonateUserDenied" in bob.evidence

    lab.extra_env = {"EWS_PW": "wrong-password-5"}
    result = run(lab, monkeypatch)
    (auth,) = findings(result, "TGT-EWS-032")
    assert auth.severity == Severity.BLOCKER and "401" in auth.observed
    assert "wrong-password-5" not in auth.observed + auth.evidence

"""The rollback copy (runners/settle/rollback.py): what reached the target since the switch goes back to
the legacy with the same engine, exactly that, once. Real Dovecot on both sides."""

from __future__ import annotations

import stat
from dataclasses import replace

import pytest
from corpus import message
from dovecot_lab import Lab, make_lab, multiset
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.engine.wave import run_wave
from runners.errors import MigrationError
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.settle.late_mail import catch_late_mail
from runners.settle.rollback import copy_back, rollback_plan, rollback_readiness
from runners.settle.switch_marks import marks_path, read_switch_marks, record_switch_marks
from runners.state.store import StateStore


@pytest.fixture
def lab(tmp_path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, monkeypatch) -> Lab:
    monkeypatch.setenv("SRC_MASTER_PW", source_dovecot.master_password)
    monkeypatch.setenv("DST_MASTER_PW", target_dovecot.master_password)
    imapfill.create_folder(source_dovecot, "alice", "Archive")
    for n in range(3):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"before the switch {n}"))
    imapfill.append(source_dovecot, "alice", "Archive", message("archived before"))
    return make_lab(tmp_path / "lab", source_dovecot, target_dovecot)


def _switched(lab: Lab) -> Plan:
    """The wave copied, its switch marks recorded: from here mail reaches the target."""
    plan = load_plan(lab.plan)
    assert run_wave(plan, "pilot").status == "ok"
    record_switch_marks(plan, "pilot")
    return plan


def _subjects(server: DovecotServer) -> dict[str, list[str]]:
    return {
        folder: sorted(body.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for body, _f, _d in messages)
        for folder, messages in imapfill.folder_snapshot(server, "alice", master=True).items()
    }


def test_rollback_copies_exactly_what_arrived_on_the_target_since_the_switch(lab: Lab) -> None:
    plan = _switched(lab)
    legacy_before = _subjects(lab.source)
    imapfill.append(lab.target, "alice", "INBOX", message("after the switch, inbox"), flags=["\\Seen"])
    imapfill.append(lab.target, "alice", "Archive", message("after the switch, filed"))
    imapfill.create_folder(lab.target, "alice", "Projects")  # a folder the user made on the target
    imapfill.append(lab.target, "alice", "Projects", message("after the switch, new folder"))

    result = copy_back(plan, "pilot")

    assert result.status == "ok"
    assert result.stats.totals()["copied"] == 3
    legacy = _subjects(lab.source)
    assert legacy["INBOX"] == sorted([*legacy_before["INBOX"], "after the switch, inbox"])
    assert legacy["Archive"] == sorted([*legacy_before["Archive"], "after the switch, filed"])
    assert legacy["Projects"] == ["after the switch, new folder"]
    # Flags come back as the target had them.
    inbox = multiset(imapfill.folder_snapshot(lab.source, "alice", master=True))["INBOX"]
    assert any(b"after the switch, inbox" in body and "\\Seen" in flags for body, flags, _d in inbox)


def test_a_second_rollback_pass_copies_nothing(lab: Lab) -> None:
    plan = _switched(lab)
    imapfill.append(lab.target, "alice", "INBOX", message("after the switch"))
    assert copy_back(plan, "pilot").stats.totals()["copied"] == 1
    legacy = _subjects(lab.source)

    again = copy_back(plan, "pilot")

    assert again.status == "ok"
    assert again.stats.totals()["copied"] == 0
    assert _subjects(lab.source) == legacy


def test_with_no_mail_since_the_switch_nothing_goes_back(lab: Lab) -> None:
    plan = _switched(lab)
    legacy = _subjects(lab.source)
    assert copy_back(plan, "pilot").stats.totals()["copied"] == 0
    assert _subjects(lab.source) == legacy


def test_the_rollback_ledger_is_its_own_and_the_forward_one_is_untouched(lab: Lab) -> None:
    plan = _switched(lab)
    forward = StateStore(plan.state_db).copied_totals("pilot")
    imapfill.append(lab.target, "alice", "INBOX", message("after the switch"))
    copy_back(plan, "pilot")
    assert StateStore(plan.state_db).copied_totals("pilot") == forward
    reversed_plan = rollback_plan(plan, "pilot")
    assert reversed_plan.state_db == plan.state_dir / "rollback" / "state.db"
    assert StateStore(reversed_plan.state_db).copied_totals("pilot")[0] == 1


def test_switch_marks_are_recorded_once_never_reread_after_mail_arrived(lab: Lab) -> None:
    plan = _switched(lab)
    first = read_switch_marks(plan, "pilot")
    assert first is not None and first.mailboxes["alice"]["INBOX"].uidnext == 4
    imapfill.append(lab.target, "alice", "INBOX", message("after the switch"))
    assert record_switch_marks(plan, "pilot") == first  # a resumed switch step gets the same marks
    # Private like the rest of the state directory: mailbox and folder names.
    assert stat.S_IMODE(marks_path(plan, "pilot").stat().st_mode) == 0o600


def test_rollback_without_switch_marks_is_refused(lab: Lab) -> None:
    plan = load_plan(lab.plan)
    with pytest.raises(MigrationError, match="no switch marks"):
        copy_back(plan, "pilot")


def test_rollback_readiness_says_before_the_switch_what_cannot_be_copied_back(lab: Lab) -> None:
    plan = load_plan(lab.plan)
    assert rollback_readiness(plan) is None
    for kind in ("ews", "graph"):
        reason = rollback_readiness(replace(plan, target=replace(plan.target, type=kind)))
        assert reason is not None and f"{kind!r} can't be read as a source" in reason
    reason = rollback_readiness(replace(plan, source=replace(plan.source, type="pop3")))
    assert reason is not None and "can't be written to" in reason


def test_late_mail_the_engine_copied_after_the_switch_does_not_go_back(lab: Lab) -> None:
    plan = _switched(lab)
    imapfill.append(lab.source, "alice", "INBOX", message("late, via a cached MX"))
    assert catch_late_mail(plan, "pilot", quiet_seconds=0).caught == 1  # now on the target, above the mark
    imapfill.append(lab.target, "alice", "INBOX", message("after the switch"))

    result = copy_back(plan, "pilot")

    assert result.stats.totals()["copied"] == 1
    inbox = _subjects(lab.source)["INBOX"]
    assert inbox.count("late, via a cached MX") == 1 and inbox.count("after the switch") == 1

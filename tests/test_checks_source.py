"""Source-health checks against a real Dovecot with seeded problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from corpus import awkward_messages, message
from dovecot_lab import make_lab, rewrite_table
from planned_targets import planned
from servers import imapfill
from servers.dovecot import DovecotServer

from checks import message_scan
from checks.families import source_folders
from checks.model import Finding, Severity, State
from checks.runner import CheckRun, run_checks, select
from runners.plan.loader import load_plan


def run(
    plan_path: Path, monkeypatch: pytest.MonkeyPatch, source: DovecotServer, target: DovecotServer, *ids: str
) -> CheckRun:
    monkeypatch.setenv("SRC_MASTER_PW", source.master_password)
    monkeypatch.setenv("DST_MASTER_PW", target.master_password)
    return run_checks(load_plan(plan_path), select(only=ids))


def findings(result: CheckRun, check_id: str, severity: Severity | None = None) -> list[Finding]:
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    assert outcome.state == State.OK, outcome.reason
    return [f for f in outcome.findings if severity is None or f.severity == severity]


@pytest.fixture
def seeded(tmp_path: Path, dovecot_factory: Any) -> tuple[Path, DovecotServer, DovecotServer]:
    users = {"alice": "a", "bob": "b", "carol": "c"}
    source = dovecot_factory(users=users)
    target = dovecot_factory(users=users)
    for body in awkward_messages():  # long line, no Message-ID, broken MIME among them
        imapfill.append(source, "alice", "INBOX", body)
    for folder in ["Projects", "projects", "Locked"]:
        imapfill.create_folder(source, "alice", folder)
    imapfill.append(source, "alice", "Locked", message("locked away"))
    (source.maildir("alice") / ".Locked").chmod(0)
    imapfill.append(source, "bob", "INBOX", message("soon unreadable"))
    imapfill.append(source, "bob", "INBOX", message("fine"))
    maildir = source.maildir("bob")
    (victim,) = [p for p in (maildir / "new").iterdir() if b"soon unreadable" in p.read_bytes()]
    victim.chmod(0)
    # carol's INBOX collects mail for seven other addresses: a catch-all.
    for n in range(7):
        imapfill.append(
            source, "carol", "INBOX", f"Delivered-To: info{n}@legacy.test\r\n".encode() + message(f"c{n}")
        )
    lab = make_lab(
        tmp_path / "lab",
        source,
        target,
        mailboxes=(
            ("alice", "alice", "w"),
            ("bob", "bob", "w"),
            ("carol", "carol", "w"),
            ("ghost", "ghost", "w"),
        ),
    )
    return lab.plan, source, target


def test_canary_login_passes_and_a_wrong_master_password_is_a_blocker(
    seeded: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, source, target = seeded
    assert findings(run(plan, monkeypatch, source, target, "SRC-AUTH-001"), "SRC-AUTH-001", Severity.PASS)
    monkeypatch.setattr(source, "master_password", "wrong")
    (blocker,) = findings(run(plan, monkeypatch, source, target, "SRC-AUTH-001"), "SRC-AUTH-001")
    assert blocker.severity == Severity.BLOCKER
    assert "AUTHENTICATIONFAILED" in blocker.evidence


def test_every_mailbox_and_folder_opens_or_is_reported(
    seeded: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, source, target = seeded
    result = run(plan, monkeypatch, source, target, "SRC-LOGIN-002")
    blockers = {f.object_id: f for f in findings(result, "SRC-LOGIN-002", Severity.BLOCKER)}
    assert set(blockers) == {"ghost", "alice/Locked"}
    assert "[AUTHORIZATIONFAILED]" in blockers["ghost"].observed  # the master may not act as a non-user
    assert "[SERVERBUG]" in blockers["alice/Locked"].evidence  # the server's words
    assert {f.object_id for f in findings(result, "SRC-LOGIN-002", Severity.PASS)} == {"bob", "carol"}


def test_scan_finds_unreadable_long_lines_missing_ids_mime_defects_and_catch_alls(
    seeded: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, source, target = seeded
    result = run(
        plan,
        monkeypatch,
        source,
        target,
        "SRC-READ-004",
        "SRC-LINE-005",
        "SRC-MSGID-006",
        "SRC-MIME-007",
        "SRC-CATCH-008",
    )
    (unreadable,) = findings(result, "SRC-READ-004", Severity.WARNING)
    assert unreadable.object_id == "bob" and "BYE FETCH failed" in unreadable.evidence
    for check_id in ("SRC-READ-004", "SRC-LINE-005", "SRC-MSGID-006", "SRC-MIME-007"):
        # Each check also says what it examined and found clean.
        passed = {f.object_id for f in findings(result, check_id, Severity.PASS)}
        assert "carol" in passed and passed.isdisjoint(
            {f.object_id for f in findings(result, check_id) if f.severity != Severity.PASS}
        )
    assert [f.object_id for f in findings(result, "SRC-LINE-005", Severity.WARNING)] == ["alice"]
    (no_id,) = findings(result, "SRC-MSGID-006", Severity.INFO)
    assert no_id.object_id == "alice" and no_id.observed.startswith("8 of")  # 8 awkward ones lack an ID
    (mime,) = findings(result, "SRC-MIME-007", Severity.INFO)
    assert "StartBoundaryNotFoundDefect" in mime.evidence or "CloseBoundaryNotFoundDefect" in mime.evidence
    (catch_all,) = findings(result, "SRC-CATCH-008", Severity.BLOCKER)
    assert catch_all.object_id == "carol" and "info6@legacy.test" in catch_all.evidence
    assert {f.object_id for f in findings(result, "SRC-CATCH-008", Severity.PASS)} == {"alice", "bob"}


def test_scan_can_be_turned_off(
    seeded: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, source, target = seeded
    plan.write_text(plan.read_text() + "\n[checks]\nscan = false\n")
    result = run(plan, monkeypatch, source, target, "SRC-LINE-005")
    assert result.outcomes[0].state == State.SKIPPED


def test_a_line_is_long_only_past_the_limit_and_the_longest_is_reported() -> None:
    limit = message_scan.MAX_LINE
    out = message_scan.MailboxScan("alice")
    head = b"Message-ID: <a@b>\r\n\r\n"
    message_scan.inspect(out, "INBOX", 1, head + b"x" * (limit - 1) + b"\r\nshort\r\n", False)
    assert out.long_lines == []  # exactly MAX_LINE characters, counting the CR
    message_scan.inspect(out, "INBOX", 2, head + b"y" * 50 + b"\n" + b"x" * (limit + 5) + b"\n", False)
    assert [(p.uid, p.detail) for p in out.long_lines] == [(2, f"longest line {limit + 5} characters")]


def test_folder_collisions_and_reserved_names(
    seeded: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, source, target = seeded
    result = run(plan, monkeypatch, source, target, "FLD-NAME-009")
    assert {f.object_id for f in findings(result, "FLD-NAME-009", Severity.PASS)} == {"bob", "carol"}
    (collision,) = findings(result, "FLD-NAME-009", Severity.BLOCKER)
    assert collision.title == "Folders collide on the target" and collision.observed == "Projects, projects"
    # Exchange targets reserve "Files"; the same survey against a Graph target plan says so.
    imapfill.create_folder(source, "bob", "Files")
    rewrite_table(
        plan,
        "target",
        lambda _: '[target]\ntype = "graph"\ntenant_id = "t"\nclient_id = "c"\nclient_secret = "x"\n\n',
    )
    with planned("graph"):  # Exchange targets load once an adapter is registered (the Exchange issues)
        result = run(plan, monkeypatch, source, target, "FLD-NAME-009")
    reserved = [
        f for f in findings(result, "FLD-NAME-009", Severity.BLOCKER) if f.title.startswith("Reserved")
    ]
    assert [f.object_id for f in reserved] == ["bob/Files"]


def test_folder_limits(
    seeded: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, source, target = seeded
    assert not findings(run(plan, monkeypatch, source, target, "FLD-LIM-010"), "FLD-LIM-010", Severity.INFO)
    # The real limits are 1,000,000 items; a lowered one shows the check reads the counts it surveyed.
    monkeypatch.setattr(source_folders, "EXCHANGE_LIMITS", (5, 10_000, 300))
    over = findings(run(plan, monkeypatch, source, target, "FLD-LIM-010"), "FLD-LIM-010", Severity.INFO)
    assert [f.object_id for f in over] == ["alice/INBOX", "carol/INBOX"]


def test_the_survey_orders_the_next_wave_largest_first(
    seeded: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_path, source, target = seeded
    run(plan_path, monkeypatch, source, target, "SRC-SURVEY-003")
    from runners.engine.wave import largest_first
    from runners.state.store import StateStore

    plan = load_plan(plan_path)
    ordered = largest_first(StateStore(plan.state_db), list(plan.mailboxes))
    # alice holds the awkward corpus (the biggest); ghost was never surveyed (can't log in): last.
    assert ordered[0].source == "alice" and ordered[-1].source == "ghost"

"""The source pass against real Dovecots: one login per mailbox per side for a whole readiness run,
the source's own quota, progress lines that never mix, and the scan's cheaper MIME parse."""

from __future__ import annotations

import email
import email.policy
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus import awkward_messages, message
from dovecot_lab import make_lab, rewrite_table
from servers import imapfill
from servers.dovecot import DovecotServer
from servers.logins import dovecot_logins

from checks.context import CheckContext
from checks.message_scan import mime_defects
from checks.model import Finding, Outcome, Severity, State
from checks.registry import CheckSpec
from checks.runner import CheckRun, run_checks, select
from runners.plan.loader import load_plan

USERS = {"alice": "a", "bob": "b", "carol": "c"}


def run(
    plan: Path, monkeypatch: pytest.MonkeyPatch, source: DovecotServer, target: DovecotServer, **kw: Any
) -> CheckRun:
    monkeypatch.setenv("SRC_MASTER_PW", source.master_password)
    monkeypatch.setenv("DST_MASTER_PW", target.master_password)
    return run_checks(load_plan(plan), select(**kw))


def findings(result: CheckRun, check_id: str) -> dict[str, Finding]:
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    assert outcome.state == State.OK, outcome.reason
    return {f.object_id: f for f in outcome.findings}


def over_quota(server: DovecotServer, user: str, size: int) -> None:
    """A message delivered straight into the Maildir, as the MTA would, past the user's quota
    (an APPEND over quota is refused)."""
    imapfill.append(server, user, "INBOX", message("before"))
    new = server.maildir(user) / "new"
    path = new / "1700000000.M1P1.delivered"
    path.write_bytes(message("big", "x" * size))
    os.chown(path, new.stat().st_uid, new.stat().st_gid)


@pytest.fixture
def quota_lab(tmp_path: Path, dovecot_factory: Any) -> tuple[Path, DovecotServer, DovecotServer]:
    """alice over her 100 KB source quota, bob at 96 % of it, carol with room."""
    source = dovecot_factory(users=USERS, quota_storage="100K")
    target = dovecot_factory(users=USERS)
    over_quota(source, "alice", 110_000)
    over_quota(source, "bob", 98_000)
    for n in range(3):
        imapfill.append(source, "carol", "INBOX", message(f"c{n}"))
    imapfill.create_folder(source, "carol", "Archive")
    imapfill.append(source, "carol", "Archive", message("archived"))
    mailboxes = tuple((u, u, "w") for u in USERS)
    return make_lab(tmp_path / "lab", source, target, mailboxes=mailboxes).plan, source, target


def test_a_whole_readiness_run_logs_in_once_per_mailbox_per_side(
    quota_lab: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, source, target = quota_lab
    source_before, target_before = dovecot_logins(source), dovecot_logins(target)
    result = run(plan, monkeypatch, source, target)  # every check: survey, quota, scan, folders, sizes
    assert not [o for o in result.outcomes if o.state == State.ERROR], [o.reason for o in result.outcomes]
    assert findings(result, "SRC-READ-004")["carol"].observed == "none among 4 messages"  # it did scan
    assert findings(result, "SRC-FLAGS-045")["carol"].severity == Severity.PASS
    assert dovecot_logins(source) - source_before == {"alice": 1, "bob": 1, "carol": 1}
    # The target: each mailbox once for the target category's probe, and the canary (alice) once more
    # for its read-only session (layout and APPENDLIMIT, which the source and size checks read
    # without the probe's writes).
    assert dovecot_logins(target) - target_before == {"alice": 2, "bob": 1, "carol": 1}


def test_flags_the_copies_would_go_without_are_found_before_anything_moves(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source_dovecot: DovecotServer,
    target_dovecot: DovecotServer,
) -> None:
    """A Maildir source with a keyword letter ``dovecot-keywords`` doesn't name and a keyword that
    isn't an IMAP atom, into an IMAP target: one warning for the mailbox, each flag on a line with
    its folder, its messages and why."""
    root = tmp_path / "maildirs" / "alice"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "dovecot-keywords").write_text("0 $Label1\n1 Wichtig-ä\n")
    for n, letters in enumerate(("Sa", "Sab", "Sbz")):
        (root / "cur" / f"170000000{n}.M{n}P1.mx:2,{letters}").write_bytes(message(f"maildir {n}"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    table = f'[source]\ntype = "maildir"\npath = "{str(root).replace("/alice", "/{user}")}"\n\n'
    rewrite_table(lab.plan, "source", lambda _: table)

    found = findings(run(lab.plan, monkeypatch, source_dovecot, target_dovecot, only=["SRC-FLAGS-045"]),
                     "SRC-FLAGS-045")  # fmt: skip

    alice = found["alice"]
    assert (alice.severity, alice.title) == (Severity.WARNING, "2 flag(s) the copies will go without")
    assert alice.observed == "2 flag(s) left off, among 3 messages"
    assert alice.evidence.splitlines()[-2:] == [
        "INBOX: the copies of 1 message(s) go without the Maildir keyword letter 'z': the folder's "
        "dovecot-keywords names no keyword for it; UIDs 3",
        "INBOX: the copies of 2 message(s) go without the keyword 'Wichtig-ä': an IMAP keyword is an atom "
        '(printable ASCII without space or ( ) { % * " \\ ]), so no IMAP server takes it; UIDs 2:3',
    ], alice.evidence


def test_source_mailboxes_at_or_near_their_own_quota(
    quota_lab: tuple[Path, DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, source, target = quota_lab
    found = findings(run(plan, monkeypatch, source, target, only=["SRC-QUOTA-011"]), "SRC-QUOTA-011")
    assert found["alice"].severity == Severity.WARNING
    assert found["alice"].title == "Source mailbox is at or over its quota"
    assert "of 102,400 bytes" in found["alice"].observed and "'User quota'" in found["alice"].observed
    assert found["bob"].severity == Severity.INFO and found["bob"].title == "Source mailbox is nearly full"
    assert found["carol"].severity == Severity.PASS


def test_a_source_without_quota_skips_the_quota_check(
    tmp_path: Path, dovecot_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = dovecot_factory(users=USERS), dovecot_factory(users=USERS)
    plan = make_lab(tmp_path / "lab", source, target, mailboxes=(("alice", "alice", "w"),)).plan
    (outcome,) = run(plan, monkeypatch, source, target, only=["SRC-QUOTA-011"]).outcomes
    assert outcome.state == State.SKIPPED and "QUOTA" in outcome.reason


def test_progress_lines_are_written_whole_and_in_order(
    quota_lab: tuple[Path, DovecotServer, DovecotServer],
) -> None:
    from dovecot_lab import Lab

    plan, source, target = quota_lab
    proc = Lab(source, target, plan.parent, plan).cutover("check", "--plan", str(plan), "--output", "json")
    assert proc.returncode in (0, 1), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    total = len(select())
    assert len(lines) == total
    for done, line in enumerate(lines, 1):
        # One outcome per line: "[n/total] ID worst (s)" then, maybe, what is still running.
        assert re.fullmatch(
            rf"\[{done}/{total}\] [A-Z]+-[A-Z]+-\d+ \w+ \(\d+\.\d s\)(; running: .*)?", line
        ), line
        assert line.count("[") == 1, line


def test_run_checks_reports_one_outcome_at_a_time(plan_for_runner: Path) -> None:
    """Checks that finish together: the progress callback is never entered twice at once."""
    count = 12
    barrier = threading.Barrier(count)

    def together(ctx: CheckContext) -> Iterator[Finding]:
        barrier.wait(timeout=10)
        yield Finding("T-X", Severity.PASS, "server", "x", "fine")

    specs = [CheckSpec(f"T-SYNC-{n:03d}", "together", "source", together) for n in range(count)]
    inside = threading.Semaphore(1)
    overlaps: list[int] = []
    seen: list[int] = []

    def progress(outcome: Outcome, done: int, total: int) -> None:
        if not inside.acquire(blocking=False):
            overlaps.append(done)
            return
        try:
            seen.append(done)
            # Hold the callback open long enough for a second caller to run into it if it could.
            threading.Event().wait(0.05)
        finally:
            inside.release()

    run_checks(load_plan(plan_for_runner), specs, on_done=progress)
    assert overlaps == [] and seen == list(range(1, count + 1))


@pytest.fixture
def plan_for_runner(tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer) -> Path:
    return make_lab(tmp_path / "lab", source_dovecot, target_dovecot).plan


def test_the_header_only_parse_finds_what_the_full_parse_finds() -> None:
    """Single-part messages are parsed up to their header: the defects must be the same."""

    def full(body: bytes) -> list[str]:
        parsed = email.message_from_bytes(body, policy=email.policy.default)
        return list(dict.fromkeys(type(d).__name__ for part in parsed.walk() for d in part.defects))

    bodies = [
        *awkward_messages(),
        message("plain"),
        b"Subject: no separator\r\nthis line is not a header\r\n",  # MissingHeaderBodySeparator
        b" continuation first\r\nSubject: x\r\n\r\nbody\r\n",  # FirstHeaderLineIsContinuation
        b"Content-Type: multipart/mixed\r\n\r\nno boundary at all\r\n",
        b'Content-Type: multipart/mixed;\r\n boundary="b"\r\n\r\n--b\r\n\r\nunclosed\r\n',
        b"Content-Type: message/rfc822\r\n\r\n continuation first\r\n\r\nx\r\n",
        b"Subject: lf only\nContent-Type: multipart/mixed; boundary=z\n\n--z\nx\n",
    ]
    for body in bodies:
        assert mime_defects(body) == full(body), body[:80]
    assert any(mime_defects(b) for b in bodies)


def test_quota_answers_are_parsed_whatever_else_the_server_says() -> None:
    from checks.source_quota import QuotaResource, parse_quota

    lines = [
        b'* QUOTAROOT INBOX "User quota" "Shared"\r\n',
        b'* QUOTA "User quota" (STORAGE 96 100 MESSAGE 3 1000)\r\n',
        b"* QUOTA Shared ()\r\n",  # a root with nothing limited
        b"* QUOTA broken (STORAGE x y)\r\n",
        b"* 3 EXISTS\r\n",
    ]
    assert parse_quota(lines) == [
        QuotaResource("User quota", "STORAGE", 96, 100),
        QuotaResource("User quota", "MESSAGE", 3, 1000),
    ]
    assert QuotaResource("r", "STORAGE", 1, 0).share == float("inf")  # a zero limit is full at once

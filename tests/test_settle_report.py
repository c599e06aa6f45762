"""The wave's sign-off report (runners/settle/report.py), built from a real run's store: two mailboxes
copied between real Dovecot servers, one message the target refuses (its words kept), one an operator
waived, a folder the plan leaves out, and the window's steps with who did them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import Lab, make_lab
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.engine.wave import run_wave
from runners.plan.loader import load_plan
from runners.settle.report import StepRecord, render_json, render_markdown, wave_report
from runners.state.store import StateStore

BIG = message("big attachment", "A" * 76 + "\n" + ("B" * 76 + "\n") * 25_000)  # ~1.9 MB: over the 1M limit
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
STEPS = [
    StepRecord("final pass", T0, T0 + 42.5, "ops@admin1 (ssh 192.0.2.7)", {"run_id": 3}),
    StepRecord("switched", T0 + 60, T0 + 75, "ops@admin1 (ssh 192.0.2.7)", {"mx": "mx.new.example"}),
    StepRecord("settled", T0 + 80, None, "lead|ops", {"reason": "probe *ok* <b>\x1b]0;evil\x07"}),
]


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory, monkeypatch) -> Lab:
    target = dovecot_factory(quota_max_mail_size="1M")
    monkeypatch.setenv("SRC_MASTER_PW", source_dovecot.master_password)
    monkeypatch.setenv("DST_MASTER_PW", target.master_password)
    for n in range(3):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"alice {n}"))
    imapfill.append(source_dovecot, "alice", "INBOX", BIG)  # UID 4: the target refuses it
    imapfill.append(source_dovecot, "bob", "INBOX", BIG)  # UID 1: refused, then waived
    imapfill.append(source_dovecot, "bob", "INBOX", message("bob 1"))
    imapfill.create_folder(source_dovecot, "bob", "Spam")
    imapfill.append(source_dovecot, "bob", "Spam", message("junk"))
    lab = make_lab(
        tmp_path / "lab",
        source_dovecot,
        target,
        mailboxes=(("alice", "alice", "pilot"), ("bob", "bob", "pilot")),
        tail='[folders]\nexclude = ["Spam"]\n',
    )
    plan = load_plan(lab.plan)
    assert run_wave(plan, "pilot").status == "partial"
    assert (
        StateStore(plan.state_db).waive_message(
            "bob", "INBOX", 1, "the customer keeps it on the legacy | *not* copied [ok]", "ops@admin1"
        )
        == 1
    )
    return lab


def test_the_report_counts_mailboxes_messages_bytes_and_lists_every_exception_with_its_reason(
    lab: Lab,
) -> None:
    report = wave_report(load_plan(lab.plan), "pilot", STEPS, now=T0 + 100)

    assert report["totals"]["mailboxes"] == 2
    assert report["totals"]["messages"] == 4  # alice 3, bob 1
    by_box = {m["source"]: m for m in report["mailboxes"]}
    assert by_box["alice"]["messages"] == 3 and by_box["alice"]["failed"] == 1
    assert by_box["bob"]["messages"] == 1
    assert report["totals"]["bytes"] == by_box["alice"]["bytes"] + by_box["bob"]["bytes"] > 0
    kinds = {(e["mailbox"], e["kind"], e["folder"]) for e in report["exceptions"]}
    assert kinds == {
        ("alice", "message failed", "INBOX"),
        ("bob", "message waived", "INBOX"),
        ("bob", "folder not copied", "Spam"),
    }
    failed = next(e for e in report["exceptions"] if e["kind"] == "message failed")
    assert failed["uid"] == 4 and "Mail size is larger than the maximum size" in failed["reason"]
    waived = next(e for e in report["exceptions"] if e["kind"] == "message waived")
    assert "decided by ops@admin1" in waived["reason"] and "keeps it on the legacy" in waived["reason"]


def test_the_steps_carry_their_timings_and_who_did_them(lab: Lab) -> None:
    report = wave_report(load_plan(lab.plan), "pilot", STEPS, now=T0 + 100)
    steps = report["steps"]
    assert [s["step"] for s in steps] == ["final pass", "switched", "settled"]
    assert steps[0]["started"] == "2026-09-21T14:13:20Z" and steps[0]["seconds"] == 42.5
    assert steps[0]["who"] == "ops@admin1 (ssh 192.0.2.7)"
    assert steps[2]["ended"] is None and steps[2]["seconds"] is None
    assert json.loads(render_json(report)) == report


def test_outside_text_is_safe_in_json_and_literal_in_markdown(lab: Lab) -> None:
    report = wave_report(load_plan(lab.plan), "pilot", STEPS, now=T0 + 100)
    text = render_json(report)
    assert "\x1b" not in text and "\x07" not in text  # a terminal showing the JSON obeys nothing

    markdown = render_markdown(report)

    assert "\x1b" not in markdown and "<b>" not in markdown
    assert "&lt;b&gt;" in markdown
    assert r"lead\|ops" in markdown  # a cell's pipe can't split the table
    assert r"\*not\* copied \[ok\]" in markdown and r"legacy \| \*not\*" in markdown
    assert "**2 mailboxes**, 4 messages" in markdown
    # Every table row has as many cells as its header: nothing from outside broke one.
    for table in markdown.split("\n\n"):
        rows = [line for line in table.splitlines() if line.startswith("|")]
        if rows:
            widths = {len(row.replace("\\|", "").split("|")) for row in rows}
            assert len(widths) == 1, table

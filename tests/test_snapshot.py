"""Snapshots of the state store, as the cockpit reads them, after real runs and checks."""

from __future__ import annotations

from pathlib import Path

from corpus import message
from dovecot_lab import PILOT_AND_LATER, make_lab
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.plan.loader import load_plan
from runners.state.read_models.snapshot import take
from runners.state.store import StateStore


def test_snapshot_and_detail_after_a_run_with_problems(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: object
) -> None:
    target = dovecot_factory(quota_max_mail_size="1M")  # type: ignore[operator]
    imapfill.create_folder(source_dovecot, "alice", "Locked")
    imapfill.append(source_dovecot, "alice", "Locked", message("locked"))
    for n in range(5):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"m{n}"))
    imapfill.append(source_dovecot, "alice", "INBOX", message("big", "B" * 1_500_000))
    (source_dovecot.maildir("alice") / ".Locked").chmod(0)
    lab = make_lab(
        tmp_path / "lab",
        source_dovecot,
        target,
        mailboxes=PILOT_AND_LATER,
    )
    lab.run("pilot")
    lab.cutover("check", "--plan", str(lab.plan), "--only", "SRC-AUTH-001", "--only", "SRC-LOGIN-002")

    plan = load_plan(lab.plan)
    store = StateStore(plan.state_db)
    snap = take(store, plan)

    alice = snap.mailbox("alice")
    assert alice is not None and alice.state == "partial" and alice.failed == 1 and not alice.ok
    assert alice.messages_done == alice.messages_total == 6  # the run's counters: every message handled
    # Shown: what is copied of what the source holds, from the ledger (the big one failed).
    assert alice.done_of_total == (5, 6) and alice.progress == 5 / 6
    assert alice.folder_errors == 1  # Locked could not be opened
    carol = snap.mailbox("carol")
    assert carol is not None and carol.state == "pending" and carol.messages_total == 0  # planned, never run
    pilot = next(w for w in snap.waves if w.name == "pilot")
    assert (
        pilot.mailboxes == 2
        and pilot.failed == 1
        and pilot.last_run_status == "partial"
        and not pilot.running
    )
    assert snap.readiness is not None and snap.readiness.by_category["source"]["blocker"] >= 1
    assert any(e.kind == "folder-failed" and e.mailbox == "alice" for e in snap.events)

    detail = store.mailbox_detail("alice")
    folders = {f.source: f for f in detail.folders}
    assert folders["INBOX"].copied == 5 and folders["INBOX"].failed == 1
    # Bytes, source against target: the source's six messages, the five on the target (byte for byte).
    source_sizes, target_sizes = sorted(inbox_sizes(source_dovecot)), inbox_sizes(target)
    assert folders["INBOX"].source_messages == 6 and folders["INBOX"].source_bytes == sum(source_sizes)
    assert folders["INBOX"].copied_bytes == sum(target_sizes) == sum(source_sizes[:5])
    assert folders["Locked"].source_bytes is None  # never listed: its pass failed
    assert folders["Locked"].error is not None and "[SERVERBUG]" in folders["Locked"].error
    (issue,) = detail.issues
    assert issue.folder == "INBOX" and issue.uid == 6 and issue.status == "failed"
    assert issue.reason is not None and "Mail size is larger than the maximum size" in issue.reason


def inbox_sizes(server: DovecotServer) -> list[int]:
    """RFC822.SIZE of every message in alice's INBOX, as the server reports it."""
    with imapfill.connect(server, "alice") as client:
        client.select_folder("INBOX", readonly=True)
        return [
            int(data[b"RFC822.SIZE"]) for data in client.fetch(client.search("ALL"), ["RFC822.SIZE"]).values()
        ]

"""kill -9 at named points of a run (runners/engine/faults.py), then a rerun: the target ends as after an
uninterrupted run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import Lab, append_many, assert_same_mailbox, make_lab, run_killed
from servers import imapfill
from servers.dovecot import DovecotServer
from servers.postgres import PASSWORD_ENV

from runners.engine.faults import parse_spec
from runners.state.rows import Intent
from runners.state.store import StateStore

TOTAL = 2000
PG_STATE = '[state]\nurl = "{url}"\npassword = "env:' + PASSWORD_ENV + '"\n'


def corpus(count: int) -> list[bytes]:
    # Every fifth message is an exact copy of the one before: duplicates must survive crashes too.
    bodies: list[bytes] = []
    for n in range(count):
        bodies.append(bodies[-1] if n % 5 == 4 else message(f"crash test {n}", "c" * (1000 + 37 * n)))
    return bodies


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer) -> Lab:
    imapfill.create_folder(source_dovecot, "alice", "Second")
    append_many(source_dovecot, "alice", "INBOX", corpus(1600))
    append_many(source_dovecot, "alice", "Second", corpus(400), flags=("\\Seen",))
    # One connection per side: the tests below count batches in the order one connection sends them.
    tail = "[run]\nbatch_messages = 25\nconnections_per_mailbox = 1\n"
    return make_lab(tmp_path / "lab", source_dovecot, target_dovecot, tail=tail)


def test_killed_between_append_and_ledger_write(lab: Lab) -> None:
    # The narrowest window: the target accepted the batch, the ledger never heard of it.
    run_killed(lab, "after-append:3")
    assert sum(len(v) for v in imapfill.folder_snapshot(lab.target, "alice", master=True).values()) == 75

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["matched_by_content"] == 25  # the unrecorded batch, found, not re-sent
    assert summary["totals"]["copied"] == TOTAL - 75
    assert_same_mailbox(lab.source, lab.target)


def test_pending_rows_of_an_older_version_are_recovered_after_the_upgrade(lab: Lab) -> None:
    """A store killed between APPEND and ledger write by a version before batch intents holds one
    pending row a message: the rerun finds those messages on the target and copies nothing twice."""
    run_killed(lab, "after-append:3")
    store = StateStore(lab.root / ".cutover" / "state.db")
    (folder,) = {int(r["folder_id"]) for r in store.query("SELECT folder_id FROM batch_intents")}
    pending = store.pending(folder)
    assert len(pending) == 25 and all(p.sent is not None for p in pending)
    # What the older version wrote instead of the batch intent: a pending row a message.
    store.record_intents(
        Intent(
            p.ref,
            p.sent.source,
            p.sha256 or b"",
            p.target_name,
            p.recovery_mark,
            p.run_id or 0,
            p.sent.sent_size,
        )
        for p in pending
        if p.sent is not None
    )
    with store.transaction() as db:
        db.execute("DELETE FROM batch_intents")
    assert [p.intent_id for p in store.pending(folder)] == [None] * 25
    store.close()

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["matched_by_content"] == 25
    assert summary["totals"]["copied"] == TOTAL - 75
    assert_same_mailbox(lab.source, lab.target)


def test_killed_at_random_moments_then_rerun(lab: Lab) -> None:
    # Eight runs, each killed at a point and batch drawn from a fixed seed: before a batch is sent,
    # after the target took it, after the ledger has it. At most 8 x 6 of the 80 batches are sent
    # before the last kill, so every run dies mid-copy, however fast or slow the machine.
    rng = random.Random(20261129)
    for _ in range(8):
        point = rng.choice(("before-append", "after-append", "after-record"))
        run_killed(lab, f"{point}:{rng.randint(1, 6)}")

    code, summary = lab.run()

    assert code == 0, summary
    assert_same_mailbox(lab.source, lab.target)
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report
    assert report["totals"]["ok"] == TOTAL


def test_fault_specs_arm_only_what_they_name() -> None:
    assert parse_spec("kill-after-append:3, hold-paused:2") == {
        "after-append": ("kill", 3),
        "paused": ("hold", 2),
    }
    # Anything else arms nothing: a typo in a real run's environment must never change the run.
    for spec in ("", "kill-after-append", "kill-after-append:0", "stop-paused:1", "kill-nowhere:1", "kill:1"):
        assert parse_spec(spec) == {}, spec


def test_an_unexpected_error_fails_its_mailbox_and_a_rerun_finishes_it(lab: Lab) -> None:
    # A bug of ours (or a library's surprise) after the 2nd batch is in the ledger: the mailbox is
    # failed with the error's words, never left "running", and the next run continues where it stopped.
    code, summary = lab.run(env=lab.env | {"CUTOVER_FAULT": "fail-after-record:2"})
    assert code == 1, summary
    assert summary["totals"]["copied"] == 50
    (alice,) = lab.status()["mailboxes"]
    assert alice["state"] == "failed", alice
    assert alice["error"] == "internal error: InjectedFault: injected fault at after-record", alice
    assert sum(len(v) for v in imapfill.folder_snapshot(lab.target, "alice", master=True).values()) == 50

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == TOTAL - 50
    assert_same_mailbox(lab.source, lab.target)


@pytest.mark.parametrize(
    ("fault", "on_target", "found"),
    [
        ("before-append:3", 50, 0),  # the third batch's intent written, nothing of it sent
        ("after-append:3", 75, 25),  # the target took it, its outcome never written
    ],
)
def test_killed_around_an_append_with_the_ledger_on_postgresql(
    tmp_path: Path,
    source_dovecot: DovecotServer,
    target_dovecot: DovecotServer,
    pg_url: str,
    fault: str,
    on_target: int,
    found: int,
) -> None:
    """The batch intents on the shared store: a rerun settles the one a kill left by the target's
    recovery, as on SQLite."""
    append_many(source_dovecot, "alice", "INBOX", corpus(300))
    tail = f"[run]\nbatch_messages = 25\nconnections_per_mailbox = 1\n{PG_STATE.format(url=pg_url)}"
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot, tail=tail)
    run_killed(lab, fault)
    assert (
        sum(len(v) for v in imapfill.folder_snapshot(lab.target, "alice", master=True).values()) == on_target
    )

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["matched_by_content"] == found
    assert summary["totals"]["copied"] == 300 - on_target
    assert_same_mailbox(lab.source, lab.target)
    assert not (lab.root / ".cutover" / "state.db").exists()

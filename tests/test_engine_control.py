"""Pause, resume and cancel a running wave from another terminal, through the state store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from corpus import message
from dovecot_lab import CUTOVER, Lab, append_many, assert_same_mailbox, make_lab, wait_for
from gate import Gate


def start_run(lab: Lab, env: dict[str, str], wave: str = "w") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CUTOVER, "run", "--plan", str(lab.plan), "--wave", wave, "--output", "json", "--progress", "none"],
        env=lab.env | env,
        cwd=lab.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def mailbox(lab: Lab, source: str) -> dict[str, Any]:
    return next(m for m in lab.status()["mailboxes"] if m["source"] == source)


def control(lab: Lab, *args: str) -> None:
    """``cutover control ...``, then wait until the run's control watcher has read the request."""
    done = lab.cutover("control", "--plan", str(lab.plan), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    db = sqlite3.connect(lab.root / ".cutover" / "state.db")
    try:
        wait_for(
            lambda: db.execute("SELECT seen FROM controls ORDER BY id DESC LIMIT 1").fetchone()[0] is not None
        )
    finally:
        db.close()


def test_pause_holds_the_copy_and_resume_finishes_it(
    tmp_path: Path, dovecot_factory: Any, gate: Gate
) -> None:
    users = {"alice": "a"}
    source, target = dovecot_factory(users=users), dovecot_factory(users=users)
    append_many(source, "alice", "INBOX", [message(f"p {n}", "p" * 20_000) for n in range(2000)])
    lab = make_lab(
        tmp_path / "lab",
        source,
        target,
        mailboxes=(("alice", "alice", "w"),),
        tail="[run]\nbatch_messages = 10\nconnections_per_mailbox = 1\n",  # batches counted one by one
    )
    # Held at the third batch while the pause request goes in; then held again on the third turn
    # of the paused wait, when the watcher has woken the mailbox at least twice without a batch.
    proc = start_run(lab, gate.env("hold-after-append:3,hold-paused:3"))
    assert gate.wait_held(proc) == "after-append"
    control(lab, "pause", "--wave", "w")
    gate.release()

    assert gate.wait_held(proc) == "paused"
    assert mailbox(lab, "alice")["state"] == "paused"
    assert mailbox(lab, "alice")["copied"] == 30  # the third batch finished; nothing moved since
    assert lab.cutover("control", "--plan", str(lab.plan), "resume", "--wave", "w").returncode == 0
    gate.open()

    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["totals"]["copied"] == 2000
    assert_same_mailbox(source, target)


def test_cancel_one_mailbox_lets_the_others_finish(tmp_path: Path, dovecot_factory: Any, gate: Gate) -> None:
    users = {"alice": "a", "bob": "b"}
    source, target = dovecot_factory(users=users), dovecot_factory(users=users)
    for user in users:
        append_many(source, user, "INBOX", [message(f"{user} {n}", "c" * 20_000) for n in range(1500)])
    lab = make_lab(
        tmp_path / "lab",
        source,
        target,
        mailboxes=(("alice", "alice", "w"), ("bob", "bob", "w")),
        tail="[run]\nbatch_messages = 10\nworkers = 2\nconnections_per_mailbox = 1\n",
    )
    # Both mailboxes hold at their first batch, sent but not recorded, until the cancel is read.
    proc = start_run(lab, gate.env("hold-after-append:1"))
    assert gate.wait_held(proc) == gate.wait_held(proc) == "after-append"
    control(lab, "cancel", "--mailbox", "alice")
    gate.open()
    out, _ = proc.communicate(timeout=120)

    assert proc.returncode == 1  # not everything was copied
    states = {m["source"]: m["state"] for m in json.loads(out)["mailboxes"]}
    assert states == {"alice": "cancelled", "bob": "ok"}
    before = mailbox(lab, "alice")
    assert before["state"] == "cancelled" and before["copied"] == 10  # the held batch, recorded
    # The next run picks alice up where she stopped, without duplicates.
    code, summary = lab.run("w")
    assert code == 0 and summary["totals"]["copied"] == 1500 - 10
    assert_same_mailbox(source, target, "alice")
    assert_same_mailbox(source, target, "bob")

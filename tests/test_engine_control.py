"""Pause, resume and cancel a running wave from another terminal, through the state store."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from corpus import message
from dovecot_lab import CUTOVER, Lab, append_many, assert_same_mailbox, make_lab, wait_for


def start_run(lab: Lab, wave: str = "w") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CUTOVER, "run", "--plan", str(lab.plan), "--wave", wave, "--output", "json", "--progress", "none"],
        env=lab.env,
        cwd=lab.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def mailbox(lab: Lab, source: str) -> dict[str, Any]:
    return next(m for m in lab.status()["mailboxes"] if m["source"] == source)


def test_pause_holds_the_copy_and_resume_finishes_it(tmp_path: Path, dovecot_factory: Any) -> None:
    users = {"alice": "a"}
    source, target = dovecot_factory(users=users), dovecot_factory(users=users)
    append_many(source, "alice", "INBOX", [message(f"p {n}", "p" * 20_000) for n in range(2000)])
    lab = make_lab(
        tmp_path / "lab",
        source,
        target,
        mailboxes=(("alice", "alice", "w"),),
        tail="[run]\nbatch_messages = 10\n",
    )
    proc = start_run(lab)
    wait_for(lambda: lab.status()["runs"] and mailbox(lab, "alice")["copied"] > 0)

    paused = lab.cutover("control", "--plan", str(lab.plan), "pause", "--wave", "w")
    assert paused.returncode == 0 and "pause requested for wave w" in paused.stdout
    wait_for(lambda: mailbox(lab, "alice")["state"] == "paused")
    held = mailbox(lab, "alice")["copied"]
    time.sleep(1.5)
    assert mailbox(lab, "alice")["copied"] == held < 2000  # nothing moves while paused
    assert lab.cutover("control", "--plan", str(lab.plan), "resume", "--wave", "w").returncode == 0

    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["totals"]["copied"] == 2000
    assert_same_mailbox(source, target)


def test_cancel_one_mailbox_lets_the_others_finish(tmp_path: Path, dovecot_factory: Any) -> None:
    users = {"alice": "a", "bob": "b"}
    source, target = dovecot_factory(users=users), dovecot_factory(users=users)
    for user in users:
        append_many(source, user, "INBOX", [message(f"{user} {n}", "c" * 20_000) for n in range(1500)])
    lab = make_lab(
        tmp_path / "lab",
        source,
        target,
        mailboxes=(("alice", "alice", "w"), ("bob", "bob", "w")),
        tail="[run]\nbatch_messages = 10\nworkers = 2\n",
    )
    proc = start_run(lab)
    wait_for(lambda: lab.status()["runs"] and mailbox(lab, "alice")["copied"] > 0)

    assert lab.cutover("control", "--plan", str(lab.plan), "cancel", "--mailbox", "alice").returncode == 0
    out, _ = proc.communicate(timeout=120)

    assert proc.returncode == 1  # not everything was copied
    states = {m["source"]: m["state"] for m in json.loads(out)["mailboxes"]}
    assert states == {"alice": "cancelled", "bob": "ok"}
    before = mailbox(lab, "alice")
    assert before["state"] == "cancelled" and 0 < before["copied"] < 1500
    # The next run picks alice up where she stopped, without duplicates.
    code, summary = lab.run("w")
    assert code == 0 and summary["totals"]["copied"] == 1500 - before["copied"]
    assert_same_mailbox(source, target, "alice")
    assert_same_mailbox(source, target, "bob")

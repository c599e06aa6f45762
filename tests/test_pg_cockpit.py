"""Cockpits over a shared PostgreSQL store: each reads when a runner commits (LISTEN/NOTIFY), not on a
timer, and several of them watch one run."""

from __future__ import annotations

import queue
from pathlib import Path

from dovecot_lab import PILOT_AND_LATER, Unreachable, write_plan
from servers.postgres import PASSWORD_ENV
from servers.process import free_ports

from cockpit.poller import SnapshotPoller
from runners.plan.loader import load_plan
from runners.state.open_store import open_store
from runners.state.read_models.snapshot import Snapshot
from runners.state.store import MailboxProgress

#: Long enough that only a notification can make a poller read again within the test.
NEVER = 3600.0
#: How long a test waits for what must come (generous: a loaded machine is slow, never wrong).
PATIENCE = 60.0


def _next(snapshots: queue.Queue[Snapshot], done: int) -> Snapshot:
    """The first snapshot delivered whose counters show ``done`` messages (earlier ones are skipped)."""
    while True:
        shot = snapshots.get(timeout=PATIENCE)
        if shot.messages_done == done:
            return shot


def test_two_cockpits_watch_one_run_from_its_notifications(tmp_path: Path, pg_url: str) -> None:
    side = Unreachable(free_ports(1)[0])
    state = f'[state]\nurl = "{pg_url}"\npassword = "env:{PASSWORD_ENV}"\n'
    plan = load_plan(write_plan(tmp_path, side, side, mailboxes=PILOT_AND_LATER, tail=state))
    runner = open_store(plan)  # a runner on another host, as far as the cockpits can tell
    run = runner.start_run("pilot", "full", 2)
    alice = runner.upsert_mailbox("alice", "alice", "pilot")
    runner.claim_mailbox(alice, run)

    seen: list[queue.Queue[Snapshot]] = [queue.Queue(), queue.Queue()]
    pollers = [SnapshotPoller(plan, shots.put, read_only=True, quiet_interval=NEVER) for shots in seen]
    for poller in pollers:
        poller.start()
    try:
        for shots in seen:
            assert _next(shots, 0).waves[0].running_mailboxes == 1
        for done in (3, 7):
            runner.mailbox_progress(alice, MailboxProgress(10, 1000, done, done * 100, 0, 0, "INBOX"))
            for shots in seen:
                shot = _next(shots, done)
                (row,) = [r for r in shot.mailboxes if r.source == "alice"]
                assert (row.messages_done, row.current_folder) == (done, "INBOX")
        runner.release_mailbox(alice, "ok")
        runner.finish_run(run, "ok", {})
        for shots in seen:
            while (shot := shots.get(timeout=PATIENCE)).waves[0].running_mailboxes:
                pass
            assert not shot.waves[0].running
    finally:
        for poller in pollers:
            poller.stop()

"""What launching a wave would do, said before it is done: a full first pass or a delta pass after
an earlier run, how much is already copied, and whether a runner is already working on the wave."""

from __future__ import annotations

from dataclasses import dataclass

from runners.plan.model import Plan
from runners.state.store import StateStore


@dataclass(frozen=True, slots=True)
class LaunchPreview:
    wave: str
    mailboxes: int
    kind: str  # "full" (never run, nothing copied) or "delta" (copies only what is not copied yet)
    last_run: int | None = None
    last_status: str | None = None
    last_ended: float | None = None
    messages_copied: int = 0
    bytes_copied: int = 0
    #: Runs of this wave still marked running by a live process (a second runner would only take
    #: the mailboxes nobody holds).
    running: tuple[int, ...] = ()


def preview_launch(store: StateStore, plan: Plan, wave: str) -> LaunchPreview:
    store.mark_dead_runs()  # a runner killed with -9 must not look like one still at work
    mailboxes = len(plan.wave(wave))
    running = tuple(
        int(r["id"])
        for r in store.query("SELECT id FROM runs WHERE wave = ? AND status = 'running'", (wave,))
    )
    last = store.query(
        "SELECT id, status, ended FROM runs WHERE wave = ? AND status != 'running' ORDER BY id DESC LIMIT 1",
        (wave,),
    )
    copied = store.query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(m.size), 0) AS bytes FROM messages m "
        "JOIN folders f ON f.id = m.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id "
        "WHERE mb.wave = ? AND m.status = 'copied'",
        (wave,),
    )[0]
    if not last and not running and not copied["n"]:
        return LaunchPreview(wave, mailboxes, "full")
    row = last[0] if last else None
    return LaunchPreview(
        wave,
        mailboxes,
        "delta",
        last_run=None if row is None else int(row["id"]),
        last_status=None if row is None else str(row["status"]),
        last_ended=None if row is None else row["ended"],
        messages_copied=int(copied["n"]),
        bytes_copied=int(copied["bytes"]),
        running=running,
    )

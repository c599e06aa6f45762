"""What launching a wave would do, said before it is done: a full first pass or a delta pass after
an earlier run, how much is already copied, and whether a runner is already working on the wave."""

from __future__ import annotations

from dataclasses import dataclass

from runners.plan.model import Plan
from runners.state.statuses import RunKind
from runners.state.store import StateStore


@dataclass(frozen=True, slots=True)
class LaunchPreview:
    wave: str
    mailboxes: int
    kind: RunKind  # full (never run, nothing copied) or delta (copies only what is not copied yet)
    last_run: int | None = None
    last_status: str | None = None
    last_ended: float | None = None
    messages_copied: int = 0
    bytes_copied: int = 0
    #: Runs of this wave still marked running by a live process (a second runner would only take
    #: the mailboxes nobody holds).
    running: tuple[int, ...] = ()


def preview_launch(store: StateStore, plan: Plan, wave: str) -> LaunchPreview:
    # A runner killed with -9 must not look like one still at work: the store's reads of runs show
    # such a run as interrupted.
    mailboxes = len(plan.wave(wave))
    running = tuple(run.id for run in store.running_runs(wave))
    last = store.last_finished_run(wave)
    copied, copied_bytes = store.copied_totals(wave)
    if last is None and not running and not copied:
        return LaunchPreview(wave, mailboxes, RunKind.FULL)
    return LaunchPreview(
        wave,
        mailboxes,
        RunKind.DELTA,
        last_run=None if last is None else last.id,
        last_status=None if last is None else last.status,
        last_ended=None if last is None else last.ended,
        messages_copied=copied,
        bytes_copied=copied_bytes,
        running=running,
    )

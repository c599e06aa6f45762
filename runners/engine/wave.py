"""Run a wave: every mailbox of it, ``workers`` at a time, recorded as one run in the state store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from runners.adapters import target_capabilities
from runners.engine.control import ControlWatcher
from runners.engine.lanes import lanes_for
from runners.engine.mailbox import MailboxJob
from runners.engine.pacing_recorder import PacingRecorder
from runners.engine.sessions import ConnectionCaps
from runners.engine.stats import MailboxStats, RunStats
from runners.engine.wave_faults import WaveFault, WaveFaults
from runners.errors import MigrationError
from runners.plan.model import MailboxEntry, Plan
from runners.state.store import StateStore

log = logging.getLogger("cutover.engine")


@dataclass(slots=True)
class RunResult:
    run_id: int
    wave: str
    kind: str
    status: str  # ok | partial | failed | interrupted
    stats: RunStats
    seconds: float


def select_mailboxes(plan: Plan, wave: str, only: Sequence[str] = ()) -> list[MailboxEntry]:
    entries = list(plan.wave(wave))
    if not entries:
        known = ", ".join(plan.waves) or "none"
        raise MigrationError(f"wave {wave!r} has no mailboxes in the plan (waves: {known})")
    if only:
        wanted = set(only)
        entries = [e for e in entries if e.source in wanted]
        missing = wanted - {e.source for e in entries}
        if missing:
            raise MigrationError(f"not in wave {wave!r}: {', '.join(sorted(missing))}")
    return entries


def largest_first(store: StateStore, entries: list[MailboxEntry]) -> list[MailboxEntry]:
    """Biggest mailboxes first (by the readiness survey, when there is one): the long ones start
    early instead of finishing the wave alone, so the wave ends sooner with the same workers."""
    sizes = store.surveyed_bytes()
    if not sizes:
        return entries
    return sorted(entries, key=lambda e: -sizes.get(e.source, 0))


def run_wave(
    plan: Plan,
    wave: str,
    *,
    workers: int | None = None,
    only: Sequence[str] = (),
    stats: RunStats | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[int], None] = lambda run_id: None,
    retry_failed: bool = False,
) -> RunResult:
    """Run every mailbox of ``wave``; raises ``WaveFault`` when a fault of the whole wave stopped it."""
    store = StateStore(plan.state_db)
    store.mark_dead_runs()
    entries = largest_first(store, select_mailboxes(plan, wave, only))
    previous = store.has_finished_run(wave)
    kind = "retry" if retry_failed else "delta" if previous else "full"
    before = store.mailbox_states()
    if store.wave_switched(wave):  # its users are on the target: only delta passes from here (#11)
        fresh = [e.source for e in entries if e.source not in before]
        if kind == "full" or fresh:
            raise MigrationError(
                f"wave {wave!r} is switched: its runs are delta passes only, and a mailbox is never started "
                f"again on the target ({', '.join(fresh) or 'no pass recorded'})"
            )
    if retry_failed:
        entries = [e for e in entries if before.get(e.source) in ("partial", "failed", "cancelled")]
        if not entries:
            raise MigrationError(f"nothing to retry in wave {wave!r}: no mailbox has failed items")
    workers = max(1, min(workers or plan.workers, len(entries)))
    run = WavePass(plan, store, wave, kind, before, stats or RunStats(), stop or threading.Event(), retry_failed)
    run.start(entries, workers)
    on_start(run.run_id)
    status = "failed"
    try:
        status = run.migrate_all(entries, workers)
    finally:
        seconds = run.finish(status)
    if run.faults.reason is not None:
        raise WaveFault(run.faults.reason)
    return RunResult(run.run_id, wave, kind, status, run.stats, seconds)


class WavePass:
    """One run of a wave, in its steps: start, migrate every mailbox, finish (and undo a wave's fault)."""

    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        wave: str,
        kind: str,
        before: Mapping[str, str],
        stats: RunStats,
        stop: threading.Event,
        retry_failed: bool,
    ) -> None:
        self.plan, self.store, self.wave, self.kind = plan, store, wave, kind
        #: Each mailbox's state before this run: what a wave's fault leaves it at.
        self.before = before
        self.stats, self.stop, self.retry_failed = stats, stop, retry_failed
        self.caps = ConnectionCaps()
        self.faults = WaveFaults(stop)
        self.run_id = 0
        self.started = time.monotonic()
        self.mailbox_ids: dict[str, int] = {}
        self.controls: ControlWatcher | None = None
        self.pacing: PacingRecorder | None = None
        #: Mailboxes being copied now, and still to start: how many connections each may have (``lanes``).
        self.running = 0
        self.waiting = 0
        self.workers = 1
        self._running_lock = threading.Lock()

    def lanes(self) -> int:
        """Connections on each side a mailbox may use now (``[run] connections_per_mailbox``, else
        ``lanes.lanes_for`` the mailboxes running now)."""
        plan = self.plan
        per_mailbox = target_capabilities(plan.target.type).connections_per_mailbox
        if plan.connections_per_mailbox is not None:
            return min(plan.connections_per_mailbox, per_mailbox)
        # Mailboxes about to start count too: their first connections must find a free slot.
        demand = min(self.workers, self.running + self.waiting)
        caps = plan.source.max_connections, plan.target.max_connections
        return lanes_for(demand, self.workers, *caps, per_mailbox)

    def start(self, entries: list[MailboxEntry], workers: int) -> None:
        self.run_id = self.store.start_run(self.wave, self.kind, workers)
        self.controls = ControlWatcher(str(self.plan.state_db), self.wave, [e.source for e in entries]).start()
        self.pacing = PacingRecorder(str(self.plan.state_db), self.run_id).start()
        self.started = time.monotonic()
        self.store.event(
            self.run_id,
            "info",
            "run-started",
            f"{self.kind} pass of wave {self.wave}: {len(entries)} mailbox(es), {workers} worker(s)",
        )

    def migrate_all(self, entries: list[MailboxEntry], workers: int) -> str:
        """Every mailbox, ``workers`` at a time; the run's status."""
        self.workers, self.waiting = workers, len(entries)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mailbox") as pool:
            results = list(pool.map(self.migrate, entries))
        if self.faults.reason is not None:
            return "failed"
        if self.stop.is_set():
            return "interrupted"
        return "ok" if {r.state for r in results} <= {"ok"} else "partial"

    def migrate(self, entry: MailboxEntry) -> MailboxStats:
        with self._running_lock:
            self.waiting -= 1
        mailbox_stats = MailboxStats(entry.source, entry.target)
        self.stats.add(mailbox_stats)
        if self.stop.is_set():
            mailbox_stats.state = "pending"
            return mailbox_stats
        mailbox_id = self.mailbox_ids[entry.source] = self.store.upsert_mailbox(
            entry.source, entry.target, entry.wave
        )
        holder = self.store.claim_mailbox(mailbox_id, self.run_id)
        if holder is not None:
            mailbox_stats.state, mailbox_stats.error_kind = "failed", "busy"
            mailbox_stats.error = f"another runner ({holder}) is migrating this mailbox"
            return mailbox_stats
        # A retry pass re-tries the failed items of partial mailboxes; a mailbox that failed or was
        # cancelled as a whole needs its normal pass.
        item_retry = self.retry_failed and self.before.get(entry.source) == "partial"
        job = MailboxJob(
            self.plan,
            self.store,
            self.caps,
            entry,
            mailbox_id,
            self.run_id,
            mailbox_stats,
            stop=self.stop,
            controls=self.controls,
            retry_failed=item_retry,
            wave_faults=self.faults,
            lanes=self.lanes,
        )
        with self._running_lock:
            self.running += 1
        try:
            job.run()
        finally:
            with self._running_lock:
                self.running -= 1
            self.store.mailbox_progress(mailbox_id, mailbox_stats.progress())
            self.store.release_mailbox(
                mailbox_id, mailbox_stats.state, mailbox_stats.error, mailbox_stats.error_kind
            )
            self.store.close()
        return mailbox_stats

    def finish(self, status: str) -> float:
        """Record the run's end (after undoing a wave's fault); the run's seconds."""
        if self.controls is not None:
            self.controls.stop()
        if self.pacing is not None:
            self.pacing.stop()
        if self.faults.reason is not None:
            self.leave_as_they_were()
        seconds = time.monotonic() - self.started
        summary: dict[str, float] = dict(self.stats.totals())
        summary["seconds"] = round(seconds, 3)
        self.store.finish_run(self.run_id, status, summary)
        if self.faults.reason is not None:
            log.error("%s", self.faults.reason)
            self.store.event(self.run_id, "error", "run-stopped", self.faults.reason)
        self.store.event(self.run_id, "info", "run-finished", f"run {self.run_id} {status} in {seconds:.1f} s")
        return seconds

    def leave_as_they_were(self) -> None:
        """A wave's fault is no mailbox's: each one it stopped before it copied anything goes back
        to its state before the run, not to failed."""
        for source, mailbox_stats in list(self.stats.mailboxes.items()):
            mailbox_id = self.mailbox_ids.get(source)
            if mailbox_id is None or mailbox_stats.copied or mailbox_stats.failed:
                continue
            state = self.before.get(source, "pending")
            mailbox_stats.state, mailbox_stats.error, mailbox_stats.error_kind = state, None, None
            self.store.release_mailbox(mailbox_id, state)

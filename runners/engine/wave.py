"""Run a wave: every mailbox of it, ``workers`` at a time, recorded as one run in the state store.

The run's mailboxes are a queue in the store (``run_mailboxes``): this process's workers take them
one at a time under a lease (``runners.state.leases``), and so does any ``cutover runner`` of the
fleet (``runners.engine.fleet``) that shares the store; the launching process finishes the run once
no mailbox of it is left open. Every write about a leased mailbox is fenced with the lease.
"""

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
from runners.engine.lease_keeper import LeaseKeeper, default_name
from runners.engine.login_queue import queued_only
from runners.engine.mailbox import MailboxJob
from runners.engine.pacing_recorder import PacingRecorder
from runners.engine.sessions import ConnectionCaps
from runners.engine.stats import MailboxStats, RunStats
from runners.engine.store_slots import StoreSlots
from runners.engine.wave_faults import WaveFault, WaveFaults
from runners.errors import MigrationError
from runners.plan.model import MailboxEntry, Plan
from runners.state.errors import LeaseLost
from runners.state.fence import Lease
from runners.state.open_store import open_store
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
    store = open_store(plan)
    store.mark_dead_runs()
    for closed in store.close_orphaned_runs(plan.lease_seconds):
        log.warning(
            "run %d's launcher is gone and every mailbox of it is finished: recorded as interrupted", closed
        )
    entries = largest_first(store, select_mailboxes(plan, wave, only))
    if plan.starts_on_login(wave):  # only the mailboxes their users' logins through the proxy queued (#14)
        entries = queued_only(store, wave, entries)
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
    keeper = LeaseKeeper(store, default_name(), plan.lease_seconds).start()
    try:
        run = WavePass(
            plan, store, wave, kind, before, stats or RunStats(), stop or threading.Event(), retry_failed,
            keeper=keeper,
        )  # fmt: skip
        run.start(entries, workers)
        on_start(run.run_id)
        status = "failed"
        try:
            status = run.migrate_all(workers)
        finally:
            seconds = run.finish(status)
    finally:
        keeper.stop()
    if run.faults.reason is not None:
        raise WaveFault(run.faults.reason)
    return RunResult(run.run_id, wave, kind, status, run.stats, seconds)


def connection_caps(store: StateStore, keeper: LeaseKeeper) -> ConnectionCaps:
    """Per-server caps kept in the store when it is shared by hosts (PostgreSQL), else in this process."""
    if not store.shared:
        return ConnectionCaps()
    return ConnectionCaps(StoreSlots(store, keeper.name, keeper.seconds, keeper.dead_holders))


class WavePass:
    """One run of a wave as this process takes part in it: start it (or join it: a fleet runner),
    work its queue, finish it (and undo a wave's fault)."""

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
        *,
        keeper: LeaseKeeper,
        caps: ConnectionCaps | None = None,
    ) -> None:
        self.plan, self.store, self.wave, self.kind = plan, store, wave, kind
        #: Each mailbox's state before this run: what a wave's fault leaves it at.
        self.before = before
        self.stats, self.stop, self.retry_failed = stats, stop, retry_failed
        self.keeper = keeper
        self.caps = caps or connection_caps(store, keeper)
        self.faults = WaveFaults(stop)
        self.run_id = 0
        self.started = time.monotonic()
        self.mailbox_ids: dict[str, int] = {}
        self.entries = {e.source: e for e in plan.mailboxes}
        self.controls: ControlWatcher | None = None
        self.pacing: PacingRecorder | None = None
        self._mailbox_done = threading.Condition()
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
        ids = self.store.upsert_mailboxes([(e.source, e.target, e.wave) for e in entries])
        # A retry pass re-tries the failed items of partial mailboxes; a mailbox that failed or was
        # cancelled as a whole needs its normal pass.
        queue = [
            (mailbox_id, self.retry_failed and self.before.get(entry.source) == "partial")
            for mailbox_id, entry in zip(ids, entries, strict=True)
        ]
        self.store.enqueue_run(self.run_id, queue)
        run = self.store.run(self.run_id)
        self.watch([e.source for e in entries], after_id=run.controls_from if run else None)
        self.store.event(
            self.run_id,
            "info",
            "run-started",
            f"{self.kind} pass of wave {self.wave}: {len(entries)} mailbox(es), {workers} worker(s)",
        )

    def join(self, run_id: int) -> None:
        """Take part in a run another process started (``cutover runner``)."""
        self.run_id = run_id
        run = self.store.run(run_id)
        self.watch([e.source for e in self.plan.wave(self.wave)], after_id=run.controls_from if run else None)

    def watch(self, sources: list[str], after_id: int | None = None) -> None:
        self.controls = ControlWatcher(self.store, self.wave, sources, after_id=after_id).start()
        self.pacing = PacingRecorder(self.store, self.run_id).start()
        self.started = time.monotonic()

    def migrate_all(self, workers: int) -> str:
        """Every mailbox of the queue, ``workers`` at a time with whoever else works it; the run's status."""
        self.workers, self.waiting = workers, self.store.open_in_run(self.run_id)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mailbox") as pool:
            list(pool.map(lambda _: self.work_queue(until_done=True), range(workers)))
        if self.faults.reason is not None:
            return "failed"
        queue = self.store.run_queue(self.run_id)
        if self.stop.is_set() or not all(q.done for q in queue):
            return "interrupted"
        return "ok" if all(q.state == "ok" for q in queue) else "partial"

    def work_queue(self, *, until_done: bool) -> int:
        """Take the run's open mailboxes one at a time until none is left to take (``until_done``:
        until every one is finished, by whoever holds it, taking over those whose lease runs out).
        Returns how many this thread worked."""
        worked = 0
        # Another runner's mailbox ends unannounced (looked at every poll); one of this process's
        # wakes the waiting workers at once, so a run ends when its last mailbox does.
        poll = min(0.5, self.plan.lease_seconds / 4)
        while not self.stop.is_set():
            lease = self.store.claim_next(
                self.run_id, self.keeper.name, self.plan.lease_seconds, self.keeper.dead_holders()
            )
            if lease is None:
                if not until_done or self.store.open_in_run(self.run_id) == 0:
                    break
                with self._mailbox_done:
                    self._mailbox_done.wait(poll)
                continue
            try:
                self.migrate(lease)
            finally:
                with self._mailbox_done:
                    self._mailbox_done.notify_all()
            worked += 1
        return worked

    def migrate(self, lease: Lease) -> MailboxStats | None:
        """One leased mailbox, every write fenced with the lease; given back when done or stopped."""
        fenced = self.store.fenced(lease)
        entry = self.entries.get(lease.source)
        if entry is None:  # a plan that doesn't list it: leave it to a runner whose plan does
            fenced.release_leased(self.run_id, "pending", "not in the plan of runner " + self.keeper.name)
            return None
        self.keeper.hold(lease)
        with self._running_lock:
            self.waiting = max(0, self.waiting - 1)
        mailbox_stats = MailboxStats(entry.source, entry.target)
        self.stats.add(mailbox_stats)
        self.mailbox_ids[entry.source] = lease.mailbox_id
        job = MailboxJob(
            self.plan,
            fenced,
            self.caps,
            entry,
            lease.mailbox_id,
            self.run_id,
            mailbox_stats,
            stop=self.stop,
            controls=self.controls,
            retry_failed=lease.item_retry,
            wave_faults=self.faults,
            lanes=self.lanes,
        )
        with self._running_lock:
            self.running += 1
        try:
            try:
                job.run()
            finally:
                fenced.mailbox_progress(lease.mailbox_id, mailbox_stats.progress())
                fenced.release_leased(
                    self.run_id, mailbox_stats.state, mailbox_stats.error, mailbox_stats.error_kind
                )
        except LeaseLost as exc:
            # Another runner holds it now and resumes it from the ledger: write nothing more.
            log.warning("%s", exc)
            mailbox_stats.state, mailbox_stats.error, mailbox_stats.error_kind = (
                "pending",
                str(exc),
                "lease-lost",
            )
        finally:
            self.keeper.drop(lease)
            with self._running_lock:
                self.running -= 1
            self.store.close_thread()
        return mailbox_stats

    def leave(self) -> None:
        """Stop watching the run's controls and pacing (a fleet runner leaving a run)."""
        if self.controls is not None:
            self.controls.stop()
        if self.pacing is not None:
            self.pacing.stop()

    def finish(self, status: str) -> float:
        """Record the run's end (after undoing a wave's fault); the run's seconds."""
        self.leave()
        if self.faults.reason is not None:
            self.leave_as_they_were()
        seconds = time.monotonic() - self.started
        summary: dict[str, float] = dict(self.stats.totals())
        summary["seconds"] = round(seconds, 3)
        self.store.finish_run(self.run_id, status, summary)
        if self.faults.reason is not None:
            log.error("%s", self.faults.reason)
            self.store.event(self.run_id, "error", "run-stopped", self.faults.reason)
        self.store.event(
            self.run_id, "info", "run-finished", f"run {self.run_id} {status} in {seconds:.1f} s"
        )
        return seconds

    def leave_as_they_were(self) -> None:
        """A wave's fault is no mailbox's: each one it stopped before it copied anything goes back
        to its state before the run, not to failed (under a lease of its own: a fleet may hold it)."""
        for source, mailbox_stats in list(self.stats.mailboxes.items()):
            mailbox_id = self.mailbox_ids.get(source)
            if mailbox_id is None or mailbox_stats.copied or mailbox_stats.failed:
                continue
            state = self.before.get(source, "pending")
            mailbox_stats.state, mailbox_stats.error, mailbox_stats.error_kind = state, None, None
            lease = self.store.claim_leased(
                mailbox_id, self.run_id, self.keeper.name, self.plan.lease_seconds
            )
            if lease is not None:
                self.store.fenced(lease).release_leased(self.run_id, state)

"""``cutover runner``: a long-lived worker of a fleet. It takes mailboxes of any launched wave (a run
still running in the shared store, started by ``cutover run`` or the cockpit's launch) under a lease,
works them like the launching process does (``runners.engine.wave.WavePass``), and waits for the
next launch when there is nothing to take. A fleet is this command once per host.

Stopping (SIGTERM, SIGINT): each worker finishes its current batch, records it, gives its mailbox
back as pending (its run's queue keeps it open: another runner, or the next launch, resumes it from
the ledger), and the runner records that it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from runners.engine.lease_keeper import LeaseKeeper
from runners.engine.sessions import ConnectionCaps
from runners.engine.stats import RunStats
from runners.engine.wave import WavePass, connection_caps
from runners.plan.model import Plan
from runners.state.errors import StoreError
from runners.state.fence import Lease
from runners.state.open_store import open_store

log = logging.getLogger("cutover.engine")

#: How often an idle runner looks for a new launch: one query, then one idle worker tries a claim.
SCOUT_SECONDS = 0.25


@dataclass(slots=True)
class FleetResult:
    """What one runner did before it stopped."""

    name: str
    mailboxes: int = 0
    copied: int = 0
    runs: set[int] = field(default_factory=set)


class FleetRunner:
    """Takes launched waves' mailboxes, ``workers`` at a time, until ``stop`` is set."""

    def __init__(self, plan: Plan, name: str, workers: int, stop: threading.Event) -> None:
        self.plan, self.name, self.workers, self.stop = plan, name, workers, stop
        self.poll = min(2.0, plan.lease_seconds / 4)
        self.store = open_store(plan)
        self.keeper = LeaseKeeper(self.store, name, plan.lease_seconds, state="idle")
        self.caps: ConnectionCaps | None = None
        self.result = FleetResult(name)
        self._passes: dict[int, WavePass] = {}
        self._busy: dict[int, int] = {}  # run id -> workers in it now
        self._skipped: set[int] = set()  # runs this runner can't work (a wave's fault, another plan)
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for work
        self._wake = threading.Condition()

    def run(self) -> FleetResult:
        self.store.mark_dead_runs()
        self.keeper.start()
        self.caps = connection_caps(self.store, self.keeper)
        log.info(
            "runner %s started: %d worker(s), lease %g s", self.name, self.workers, self.plan.lease_seconds
        )
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="runner") as pool:
                workers = [pool.submit(self._work) for _ in range(self.workers)]
                last = 0.0
                while not self.stop.wait(SCOUT_SECONDS):
                    self._scout()
                    if time.monotonic() - last >= self.poll:
                        last = time.monotonic()
                        self.keeper.set_state("working" if self.keeper.held() else "idle")
                        self._leave_finished_runs()
                        self._close_orphaned_runs()
                    if any(w.done() for w in workers):
                        self.stop.set()  # a worker died of an error: stop the rest cleanly
                self.keeper.set_state("stopping")
                with self._wake:
                    self._wake.notify_all()
                with self._lock:
                    for wave_pass in self._passes.values():
                        wave_pass.stop.set()
                for worker in workers:
                    worker.result()  # a worker's error is the runner's
        finally:
            with self._lock:
                for wave_pass in self._passes.values():
                    wave_pass.leave()
                self._passes.clear()
            self.keeper.stop("stopped")
        log.info("runner %s stopped: %d mailbox(es) worked", self.name, self.result.mailboxes)
        return self.result

    def _work(self) -> None:
        """One worker: the next mailbox of any live run, until the runner stops."""
        while not self.stop.is_set():
            try:
                taken = self._claim()
            except StoreError as exc:  # the store can't be reached now: ask again after a pause
                log.error("runner %s: %s", self.name, exc)
                taken = None
            if taken is None:
                self._wait_for_work()
                continue
            with self._wake:
                self._wake.notify()  # there was work: another idle worker may find more
            wave_pass, lease = taken
            try:
                stats = wave_pass.migrate(lease)
            except StoreError as exc:
                # The store failed under this mailbox (a dropped connection, a restarted server): its
                # lease runs out and whoever claims it next resumes it; this runner goes on.
                log.error("runner %s: %s: %s", self.name, lease.source, exc)
                self.stop.wait(self.poll)
                continue
            finally:
                with self._lock:
                    self._busy[wave_pass.run_id] -= 1
            if stats is None:  # not in this runner's plan
                self._skip(wave_pass.run_id, f"mailbox {lease.source} is not in this runner's plan")
                continue
            if wave_pass.faults.reason is not None:
                self._skip(wave_pass.run_id, wave_pass.faults.reason)
            with self._lock:
                self.result.mailboxes += 1
                self.result.copied += stats.copied
                self.result.runs.add(wave_pass.run_id)

    def _wait_for_work(self) -> None:
        """Until the scout sees a run with open mailboxes (or, at the latest, the next poll)."""
        with self._wake:
            self._idle += 1
            try:
                if not self.stop.is_set():
                    self._wake.wait(self.poll)
            finally:
                self._idle -= 1

    def _scout(self) -> None:
        """One look at the store for idle workers: a live run with open mailboxes wakes one of them."""
        if not self._idle:
            return
        try:
            open_runs = set(self.store.runs_with_open_work()) - self._skipped
        except StoreError as exc:
            log.error("runner %s: %s", self.name, exc)
            return
        if open_runs:
            with self._wake:
                self._wake.notify()

    def _claim(self) -> tuple[WavePass, Lease] | None:
        live = {run.id: run for run in self.store.running_runs()}
        for run_id in self.store.runs_with_open_work():
            run = live.get(run_id)
            if run is None or run_id in self._skipped:
                continue
            lease = self.store.claim_next(
                run_id, self.name, self.plan.lease_seconds, self.keeper.dead_holders()
            )
            if lease is None:
                continue
            with self._lock:
                wave_pass = self._passes.get(run_id)
                if wave_pass is None:
                    wave_pass = self._join(run_id, run.wave, run.kind)
                self._busy[run_id] = self._busy.get(run_id, 0) + 1
            return wave_pass, lease
        return None

    def _join(self, run_id: int, wave: str, kind: str) -> WavePass:
        assert self.caps is not None
        wave_pass = WavePass(
            self.plan, self.store, wave, kind, {}, RunStats(), threading.Event(), False,
            keeper=self.keeper, caps=self.caps,
        )  # fmt: skip
        wave_pass.join(run_id)
        if self.stop.is_set():
            wave_pass.stop.set()
        self._passes[run_id] = wave_pass
        log.info("runner %s joins run %d (wave %s, %s pass)", self.name, run_id, wave, kind)
        return wave_pass

    def _skip(self, run_id: int, why: str) -> None:
        with self._lock:
            if run_id not in self._skipped:
                self._skipped.add(run_id)
                log.error("runner %s leaves run %d: %s", self.name, run_id, why)

    def _close_orphaned_runs(self) -> None:
        """A run whose launcher is gone (another host's, say) ends when the fleet has finished its
        mailboxes: interrupted, as a launcher killed on this host leaves it. Else it reads running forever."""
        try:
            closed = self.store.close_orphaned_runs(self.plan.lease_seconds)
        except StoreError as exc:
            log.error("runner %s: %s", self.name, exc)
            return
        for run_id in closed:
            log.warning(
                "runner %s: run %d's launcher is gone and every mailbox of it is finished: recorded as "
                "interrupted (a new run of its wave makes the delta pass and records the totals)",
                self.name,
                run_id,
            )

    def _leave_finished_runs(self) -> None:
        """Stop watching runs that ended and that no worker of this runner is in."""
        live = {run.id for run in self.store.running_runs()}
        with self._lock:
            for run_id in [r for r, p in self._passes.items() if r not in live and not self._busy.get(r)]:
                self._passes.pop(run_id).leave()

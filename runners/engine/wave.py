"""Run a wave: every mailbox of it, ``workers`` at a time, recorded as one run in the state store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from runners.engine.control import ControlWatcher
from runners.engine.mailbox import MailboxJob
from runners.engine.sessions import ConnectionCaps
from runners.engine.stats import MailboxStats, RunStats
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
    store = StateStore(plan.state_db)
    store.mark_dead_runs()
    entries = largest_first(store, select_mailboxes(plan, wave, only))
    previous = store.has_finished_run(wave)
    kind = "retry" if retry_failed else "delta" if previous else "full"
    before = store.mailbox_states()
    if retry_failed:
        entries = [e for e in entries if before.get(e.source) in ("partial", "failed", "cancelled")]
        if not entries:
            raise MigrationError(f"nothing to retry in wave {wave!r}: no mailbox has failed items")
    workers = max(1, min(workers or plan.workers, len(entries)))
    run_id = store.start_run(wave, kind, workers)
    on_start(run_id)
    stats = stats or RunStats()
    stop = stop or threading.Event()
    caps = ConnectionCaps()
    controls = ControlWatcher(str(plan.state_db), wave, [e.source for e in entries]).start()
    started = time.monotonic()
    store.event(
        run_id,
        "info",
        "run-started",
        f"{kind} pass of wave {wave}: {len(entries)} mailbox(es), {workers} worker(s)",
    )

    def migrate(entry: MailboxEntry) -> MailboxStats:
        mailbox_stats = MailboxStats(entry.source, entry.target)
        stats.add(mailbox_stats)
        if stop.is_set():
            mailbox_stats.state = "pending"
            return mailbox_stats
        mailbox_id = store.upsert_mailbox(entry.source, entry.target, entry.wave)
        holder = store.claim_mailbox(mailbox_id, run_id)
        if holder is not None:
            mailbox_stats.state, mailbox_stats.error_kind = "failed", "busy"
            mailbox_stats.error = f"another runner ({holder}) is migrating this mailbox"
            return mailbox_stats
        # A retry pass re-tries the failed items of partial mailboxes; a mailbox that failed or was
        # cancelled as a whole needs its normal pass.
        item_retry = retry_failed and before.get(entry.source) == "partial"
        job = MailboxJob(
            plan,
            store,
            caps,
            entry,
            mailbox_id,
            run_id,
            mailbox_stats,
            stop=stop,
            controls=controls,
            retry_failed=item_retry,
        )
        try:
            job.run()
        finally:
            store.mailbox_progress(mailbox_id, mailbox_stats.progress())
            store.release_mailbox(
                mailbox_id, mailbox_stats.state, mailbox_stats.error, mailbox_stats.error_kind
            )
            store.close()
        return mailbox_stats

    status = "failed"
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mailbox") as pool:
            results = list(pool.map(migrate, entries))
        states = {r.state for r in results}
        if stop.is_set():
            status = "interrupted"
        elif states <= {"ok"}:
            status = "ok"
        else:
            status = "partial"
    finally:
        controls.stop()
        seconds = time.monotonic() - started
        summary: dict[str, float] = dict(stats.totals())
        summary["seconds"] = round(seconds, 3)
        store.finish_run(run_id, status, summary)
        store.event(run_id, "info", "run-finished", f"run {run_id} {status} in {seconds:.1f} s")
    return RunResult(run_id, wave, kind, status, stats, seconds)

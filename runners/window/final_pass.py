"""The final pass: one more delta pass through the engine, timed (the downtime users could notice),
with progress lines against the window's clock and an ETA from the last measured delta pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from runners.engine.stats import RunStats
from runners.engine.wave import run_wave
from runners.plan.model import Plan
from runners.state.store import StateStore
from runners.window.conditions import window_hours

#: Seconds between two progress lines of a running final pass.
PROGRESS_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class FinalPass:
    run_id: int
    status: str  # the run's: ok | partial | failed | interrupted
    seconds: float
    #: What the last delta pass before it took (the ETA's basis); None when none was measured.
    expected_seconds: float | None
    copied: int
    failed: int


def final_pass(
    plan: Plan, store: StateStore, wave: str, say: Callable[[str], None], heartbeat: Callable[[], None]
) -> FinalPass:
    """Run the delta pass; ``say`` gets a line every ``PROGRESS_EVERY`` seconds, ``heartbeat`` is
    called as often (the driver renews its lease there)."""
    expected = store.last_pass_seconds(wave, "delta")
    total = len(plan.wave(wave))
    stats, done = RunStats(), threading.Event()
    say(f"final pass of {wave}: {total} mailbox(es); {_clock(plan)}; expected {_eta(expected, 0.0)}")
    started = time.monotonic()

    def report() -> None:
        while not done.wait(PROGRESS_EVERY):
            heartbeat()
            elapsed = time.monotonic() - started
            finished = sum(1 for m in list(stats.mailboxes.values()) if m.state not in ("pending", "running"))
            say(f"final pass: {finished}/{total} mailbox(es), {elapsed:.0f} s, ETA {_eta(expected, elapsed)}")

    reporter = threading.Thread(target=report, name="final-pass-progress", daemon=True)
    reporter.start()
    try:
        result = run_wave(plan, wave, stats=stats)
    finally:
        done.set()
        reporter.join()
    totals = result.stats.totals()
    return FinalPass(result.run_id, result.status, result.seconds, expected,
                     int(totals.get("copied", 0)), int(totals.get("failed", 0)))  # fmt: skip


def _eta(expected: float | None, elapsed: float) -> str:
    if expected is None:
        return "unknown (no delta pass measured)"
    left = expected - elapsed
    return f"~{left:.0f} s more" if left > 0 else "any moment (past the last pass's time)"


def _clock(plan: Plan) -> str:
    """The window's clock: how much of it is used, when the plan says when it opened."""
    hours = window_hours(plan)
    length = f"{hours:g} h window" if hours else "no window length in the plan"
    if plan.window.start is None:
        return length
    used = (datetime.now(UTC) - plan.window.start).total_seconds()
    if used < 0:
        return f"{length}, opens in {-used / 60:.0f} min"
    return f"{length}, {used / 60:.0f} min used"

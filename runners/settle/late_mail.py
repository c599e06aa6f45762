"""Late mail: after the switch, senders with cached MX records still deliver to the legacy for a while.

``catch_late_mail`` runs delta passes of the wave against the legacy (the plan's source, unchanged:
the same engine, the same ledger as the wave's copy) until no pass has found a new message for
``quiet_seconds``, counting what each pass caught. It is the settled step's last part; the window
records the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runners.engine.wave import RunResult, run_wave
from runners.plan.model import Plan


@dataclass(frozen=True, slots=True)
class LatePass:
    """One delta pass: its run id in the store, how many late messages it copied, its status."""

    run_id: int
    caught: int
    status: str
    seconds: float


@dataclass(slots=True)
class LateMailResult:
    #: "quiet" (no new mail for the quiet time), or "stopped" (the caller's event).
    outcome: str
    passes: list[LatePass] = field(default_factory=list)

    @property
    def caught(self) -> int:
        return sum(p.caught for p in self.passes)


def catch_late_mail(
    plan: Plan,
    wave: str,
    *,
    quiet_seconds: float,
    pass_interval_seconds: float = 60.0,
    stop: threading.Event | None = None,
    on_pass: Callable[[LatePass, LateMailResult], None] = lambda late, so_far: None,
    clock: Callable[[], float] = time.monotonic,
    run: Callable[..., RunResult] = run_wave,
) -> LateMailResult:
    """Delta passes of ``wave`` until the legacy stayed quiet for ``quiet_seconds``, or ``stop`` is set.

    The quiet time counts from the loop's start and restarts at every pass that caught mail; the loop
    ends after the first pass that finds the legacy quiet for that long, so at least one pass always
    runs. Between passes it waits ``pass_interval_seconds`` (``stop`` cuts the wait short; a pass in
    progress gets ``stop`` too and ends as the engine ends a paused run). ``on_pass`` is called after
    every pass with that pass and the result so far (from the loop's thread). A pass that fails as a
    whole raises (``WaveFault``), with the passes so far lost to the caller only if it didn't keep them
    from ``on_pass``.
    """
    stop = stop or threading.Event()
    result = LateMailResult("stopped")
    last_news = clock()
    while not stop.is_set():
        done = run(plan, wave, stop=stop)
        late = LatePass(done.run_id, done.stats.totals().get("copied", 0), done.status, done.seconds)
        result.passes.append(late)
        now = clock()
        if late.caught:
            last_news = now
        on_pass(late, result)
        if stop.is_set():
            break
        if now - last_news >= quiet_seconds:
            result.outcome = "quiet"
            break
        stop.wait(min(pass_interval_seconds, max(0.0, quiet_seconds - (now - last_news))))
    return result

"""Run checks concurrently, each with a deadline; a slow or dead server makes its checks "error",
it never hangs the run."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from checks.catalog import all_checks
from checks.context import CheckContext
from checks.model import Finding, Outcome, State
from checks.registry import CheckSpec, SkipCheck
from checks.waivers import apply_waivers
from runners.errors import ProtocolError
from runners.plan.model import Plan

#: Checks running at once. Network waits dominate, so more than the cores; servers are capped apart.
PARALLEL_CHECKS = 16


@dataclass(slots=True)
class CheckRun:
    phase: str
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0

    @property
    def findings(self) -> list[Finding]:
        return [f for o in self.outcomes for f in o.findings]

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "blocker" and f.waiver is None]

    @property
    def incomplete(self) -> bool:
        return any(o.state == State.ERROR for o in self.outcomes)


class Running:
    """Which checks are running right now, for the progress line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, None] = {}

    def add(self, check_id: str) -> None:
        with self._lock:
            self._ids[check_id] = None

    def discard(self, check_id: str) -> None:
        with self._lock:
            self._ids.pop(check_id, None)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)


def select(category: str | None = None, only: Sequence[str] = ()) -> list[CheckSpec]:
    specs = all_checks()
    if category:
        specs = [s for s in specs if s.category == category]
    if only:
        wanted = {i.upper() for i in only}
        unknown = wanted - {s.id for s in all_checks()}
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        specs = [s for s in specs if s.id in wanted]
    return specs


def run_checks(
    plan: Plan,
    specs: Sequence[CheckSpec],
    *,
    phase: str = "pre",
    on_done: Callable[[Outcome, int, int], None] = lambda outcome, done, total: None,
    running: Running | None = None,
) -> CheckRun:
    ctx = CheckContext(plan, phase)
    run = CheckRun(phase, started=time.time())
    started = time.monotonic()
    slots = threading.Semaphore(PARALLEL_CHECKS)
    lock = threading.Lock()
    results: dict[str, Outcome] = {}
    threads: list[tuple[CheckSpec, threading.Thread, list[Outcome]]] = []
    started_at: dict[str, float] = {}

    running = running or Running()

    def finish(outcome: Outcome) -> None:
        running.discard(outcome.check_id)
        with lock:
            if outcome.check_id in results:
                return  # it timed out already and was reported then
            results[outcome.check_id] = outcome
            # Under the lock: one caller at a time, in the order of ``done`` (progress lines never mix).
            on_done(outcome, len(results), len(specs))

    for spec in specs:
        box: list[Outcome] = []
        slots.acquire()
        # Daemon threads: a check stuck in a library call past its deadline must not keep the process alive.
        started_at[spec.id] = time.monotonic()
        running.add(spec.id)
        thread = threading.Thread(
            target=_run_one, args=(ctx, spec, box, slots, finish), daemon=True, name=f"check-{spec.id}"
        )
        thread.start()
        threads.append((spec, thread, box))
    for spec, thread, _box in threads:
        # Each check has ctx.timeout from its own start (it may have waited for a free slot).
        began = started_at.get(spec.id, time.monotonic())
        thread.join(max(began + ctx.timeout - time.monotonic(), 0.0) + 0.5)
        if thread.is_alive():
            finish(
                Outcome(
                    spec.id,
                    spec.title,
                    spec.category,
                    State.ERROR,
                    reason=f"timed out after {ctx.timeout:.0f} s",
                )
            )
    outcomes = [results[s.id] for s in specs]
    apply_waivers(outcomes, plan.readiness.waivers)
    run.outcomes = outcomes
    run.seconds = time.monotonic() - started
    return run


def _distinct(findings: list[Finding]) -> list[Finding]:
    """Two findings of one check with the same fingerprint would merge in the history: number them."""
    seen: dict[str, int] = {}
    out: list[Finding] = []
    for finding in findings:
        count = seen.get(finding.fingerprint, 0)
        seen[finding.fingerprint] = count + 1
        out.append(finding if not count else dataclasses.replace(finding, key=f"{finding.key}#{count + 1}"))
    return out


def _run_one(
    ctx: CheckContext,
    spec: CheckSpec,
    box: list[Outcome],
    slots: threading.Semaphore,
    finish: Callable[[Outcome], None],
) -> None:
    began = time.monotonic()
    try:
        if spec.phase not in ("any", ctx.phase):
            raise SkipCheck(f"applies to the {spec.phase}-cutover phase only")
        findings = _distinct(list(spec.run(ctx)))
        outcome = Outcome(spec.id, spec.title, spec.category, State.OK, findings)
    except SkipCheck as exc:
        outcome = Outcome(spec.id, spec.title, spec.category, State.SKIPPED, reason=str(exc))
    except ProtocolError as exc:
        outcome = Outcome(spec.id, spec.title, spec.category, State.ERROR, reason=str(exc))
    except Exception as exc:  # a check's bug or a library's surprise: say so, never call it a pass
        outcome = Outcome(
            spec.id, spec.title, spec.category, State.ERROR, reason=f"{type(exc).__name__}: {exc}"
        )
    finally:
        slots.release()
    outcome.seconds = time.monotonic() - began
    box.append(outcome)
    finish(outcome)

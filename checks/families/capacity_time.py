"""TGT-TIME-005: does each wave fit the cutover window at the expected throughput?

Estimate = the wave's surveyed messages / throughput (msg/s). Throughput is the plan's
``[capacity] throughput``, else what earlier ``cutover run`` passes achieved on this state store:
all their copied messages over all their seconds, counting only runs that copied something (a
delta pass that found nothing new would measure listing speed, not copying). Over the window is a
blocker, over 80 % of it a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from checks.context import CheckContext
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.survey import survey
from checks.volume import total
from runners.state.open_store import open_store
from runners.state.store import StateStore

CHECK_ID = "TGT-TIME-005"
#: Above this share of the window the estimate leaves too little slack for retries and deltas.
WARN_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Throughput:
    per_second: float
    source: str  # how it was obtained, for the evidence


@check(CHECK_ID, "Each wave fits the cutover window at the expected throughput", category="capacity",
       phase="pre")  # fmt: skip
def migration_time(ctx: CheckContext) -> Iterator[Finding]:
    settings = ctx.plan.readiness.capacity
    window = settings.window_hours
    if window is None:
        raise SkipCheck("no [capacity] window_hours in the plan")
    rate = (
        Throughput(
            settings.throughput, f"{settings.throughput:g} msg/s from the plan's [capacity] throughput"
        )
        if settings.throughput
        else measured_throughput(open_store(ctx.plan))
    )
    if rate is None:
        raise SkipCheck(
            "no [capacity] throughput in the plan and no earlier run in the state store copied "
            "anything to measure it from: set throughput, or run a pilot wave first"
        )
    boxes = survey(ctx).mailboxes
    for wave in ctx.plan.waves:
        volume = total(b for b in boxes if b.entry.wave == wave)
        hours = volume.messages / rate.per_second / 3600
        share = hours / window
        observed = f"{volume.messages:,} messages in {volume.mailboxes} mailbox(es): about {hours:.1f} h"
        if not volume.complete:
            observed += f" ({volume.gap_note()})"
        expected = f"within the {window:g} h window (warning above {WARN_SHARE:.0%})"
        evidence = (
            f"{volume.messages:,} messages / {rate.per_second:.3g} msg/s = {hours:.2f} h; {rate.source}"
        )
        if share > 1:
            severity, title = Severity.BLOCKER, f"Wave {wave} needs {hours:.1f} h, the window is {window:g} h"
        elif share > WARN_SHARE:
            severity, title = Severity.WARNING, f"Wave {wave} needs {share:.0%} of the {window:g} h window"
        elif not volume.complete:
            severity, title = Severity.WARNING, f"Wave {wave}: at least {hours:.1f} h, volume not fully known"
        else:
            severity, title = Severity.PASS, f"Wave {wave} fits the window ({hours:.1f} h of {window:g} h)"
        yield Finding(
            CHECK_ID, severity, "wave", wave, title, observed=observed, expected=expected, evidence=evidence,
            remediation="" if severity is Severity.PASS else
            "Split the wave, pre-stage it with full passes before the window (only the delta runs in it), "
            "or raise throughput (more workers, see docs/benchmarks.md).",
        )  # fmt: skip


def measured_throughput(store: StateStore) -> Throughput | None:
    """Messages per second over every finished run that copied something, or None."""
    try:
        runs_done = store.finished_run_summaries()
    finally:
        store.close()
    copied, seconds, runs = 0, 0.0, []
    for run in runs_done:
        summary = run.summary
        # The engine stores its totals flat, with the run's seconds (runners/engine/wave.py).
        run_copied, run_seconds = summary.get("copied"), summary.get("seconds")
        if isinstance(run_copied, int | float) and isinstance(run_seconds, int | float):
            if run_copied > 0 and run_seconds > 0:
                copied, seconds = copied + int(run_copied), seconds + float(run_seconds)
                runs.append(str(run.id))
    if not runs:
        return None
    rate = copied / seconds
    return Throughput(
        rate,
        f"throughput measured: {copied:,} messages copied in {seconds:.1f} s by earlier run(s) {', '.join(runs)}",
    )

"""How long the readiness view takes to open: from pressing ``r`` on the overview to the first paint
that shows the findings table filled, over a readiness run of a large fleet.

    .venv/bin/python bench/readiness_bench.py                    # 10,000 mailboxes, 160×48
    .venv/bin/python bench/readiness_bench.py --mailboxes 1000 --repeat 5

The store holds one full check run: a login finding per mailbox (a pass, or a blocker for 1 % of
them), a survey finding per mailbox (info), and a few domain findings, recorded with
``checks.history.record`` like ``cutover check``. The cockpit runs headless (``run_test``) without
its poller; the bench hands it one snapshot, then opens the view ``--repeat`` times (``r``, then
``escape`` back to the overview). "Open" ends with the end of the first ``App._display`` (the
paint; headless it is wrapped to render the segments as a terminal write would) after which the
view is on top and its table has its rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_MS = 100.0


def build(root: Path, mailboxes: int) -> Path:
    from cockpit_bench import write_plan

    from checks.history import record
    from checks.model import Finding, Outcome, Severity, State
    from checks.runner import CheckRun
    from runners.plan.loader import load_plan
    from runners.state.store import StateStore

    path = write_plan(root, mailboxes, 5)
    plan = load_plan(path)
    login, survey = [], []
    for i, entry in enumerate(plan.mailboxes):
        refused = i % 100 == 7
        login.append(
            Finding(
                "SRC-LOGIN-002",
                Severity.BLOCKER if refused else Severity.PASS,
                "mailbox",
                entry.source,
                "The source refuses the master login" if refused else "Master login works",
                observed="NO [AUTHENTICATIONFAILED] Authentication failed." if refused else "OK",
                evidence="C: a1 AUTHENTICATE PLAIN ****\nS: a1 NO [AUTHENTICATIONFAILED]" if refused else "",
            )
        )
        survey.append(
            Finding("SRC-SURVEY-003", Severity.INFO, "mailbox", entry.source, "Surveyed",
                    observed=f"{i % 5000} messages, {i % 700} MB")
        )  # fmt: skip
    domains = [
        Finding("DNS-SPF-005", Severity.WARNING, "domain", f"d{n}.example", "SPF does not include the target",
                observed="v=spf1 mx -all")
        for n in range(20)
    ]  # fmt: skip
    outcomes = [
        Outcome("SRC-LOGIN-002", "Source login", "source", State.OK, login),
        Outcome("SRC-SURVEY-003", "Source survey", "source", State.OK, survey),
        Outcome("DNS-SPF-005", "SPF", "dns", State.OK, domains),
    ]
    store = StateStore(plan.state_db)
    try:
        record(store, CheckRun("pre", outcomes, started=time.time(), seconds=1.0), "all")
    finally:
        store.close()
    return path


def measure(plan_path: Path, repeat: int, size: tuple[int, int]) -> list[float]:
    from cockpit.app import CockpitApp
    from cockpit.screens.overview import OverviewView
    from cockpit.screens.readiness import ReadinessView
    from cockpit.widgets.fleet_table import FleetTable
    from runners.plan.loader import load_plan
    from runners.state.read_models.snapshot import take
    from runners.state.store import StateStore

    app = CockpitApp(load_plan(plan_path), poll=False)
    app.animation_level = "none"
    opened: list[float] = []
    pressed = [0.0]
    done = asyncio.Event()
    display = app._display

    def timed_display(screen: Any, renderable: Any) -> None:
        display(screen, renderable)
        if renderable is not None and app.console is not None:
            list(app.console.render(renderable, app.console.options))  # what a terminal write renders
        top = app.screen
        if pressed[0] and isinstance(top, ReadinessView) and top.query_one("#findings", FleetTable).row_count:
            opened.append(time.perf_counter() - pressed[0])
            pressed[0] = 0.0
            done.set()

    app._display = timed_display  # type: ignore[method-assign]

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            store = StateStore(app.plan.state_db)
            app.apply(take(store, app.plan, query=app.current_query()))
            store.close()
            await pilot.pause()
            for _ in range(repeat):
                done.clear()
                pressed[0] = time.perf_counter()
                await pilot.press("r")
                await asyncio.wait_for(done.wait(), 60)
                await pilot.press("escape")
                await pilot.pause()
                assert isinstance(app.screen, OverviewView)

    asyncio.run(main())
    return opened


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--size", default="160x48", help="terminal WIDTHxHEIGHT")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    width, height = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="readiness-bench-") as tmp:
        plan = build(Path(tmp), args.mailboxes)
        opened = measure(plan, args.repeat, (width, height))
    ms = sorted(x * 1000 for x in opened)
    result = {
        "mailboxes": args.mailboxes,
        "opens": len(ms),
        "first_ms": round(opened[0] * 1000, 1),
        "median_ms": round(statistics.median(ms), 1),
        "max_ms": round(ms[-1], 1),
        "target_ms": TARGET_MS,
    }
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(
            f"readiness open, {args.mailboxes:,} mailboxes, {len(ms)} opens: first {result['first_ms']} ms, "
            f"median {result['median_ms']} ms, max {result['max_ms']} ms (target {TARGET_MS:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

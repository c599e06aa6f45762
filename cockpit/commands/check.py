"""``cutover check``: run the readiness checks, record them, print the findings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from checks.history import Changes, record
from checks.model import Outcome
from checks.render import render_json, render_junit, render_markdown, render_table, run_data
from checks.runner import CheckRun, Running, run_checks, select
from cockpit.commands.preflight import warn_before_connecting
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.safe_text import safe_lines
from runners.state.open_store import open_store
from runners.state.operators import operator_id

RENDERERS = {"table": render_table, "json": render_json, "junit": render_junit, "markdown": render_markdown}


def check_command(args: argparse.Namespace) -> int:
    if args.list:
        for spec in select(args.category, args.only):
            print(f"{spec.id:<16} {spec.category:<10} {spec.phase:<4} {spec.title}")
        return 0
    if not args.plan:
        print("cutover: error: check needs --plan (or --list)", file=sys.stderr)
        return 2
    plan = load_plan(args.plan)
    try:
        specs = select(args.category, args.only)
    except KeyError as exc:
        print(f"cutover: error: unknown check id(s): {exc.args[0]}", file=sys.stderr)
        return 2
    if not specs:
        print("cutover: error: no check matches", file=sys.stderr)
        return 2
    warn_before_connecting(plan)
    tty = sys.stderr.isatty()

    running = Running()

    def progress(outcome: Outcome, done: int, total: int) -> None:
        worst = outcome.worst.value if outcome.worst else outcome.state.value
        now = running.ids()
        busy = f"; running: {', '.join(now[:4])}{' ...' if len(now) > 4 else ''}" if now else ""
        line = f"[{done}/{total}] {outcome.check_id} {worst} ({outcome.seconds:.1f} s){busy}"
        end = "" if tty and done < total else "\n"
        # One write per line (run_checks calls this from one thread at a time): lines never interleave.
        sys.stderr.write((("\r\033[K" + line) if tty else line) + end)
        sys.stderr.flush()

    run = run_checks(plan, specs, phase=args.phase, on_done=progress, running=running)
    run_id, changes = record_run(plan, run, args.category, args.only)
    print(
        safe_lines(RENDERERS[args.output](run_data(run, run_id, changes)))
    )  # the data is safe: belt and braces
    if run.incomplete:
        return 2
    return 1 if run.blockers else 0


def record_run(
    plan: Plan, run: CheckRun, category: str | None = None, only: Sequence[str] = ()
) -> tuple[int, Changes]:
    """Keep a check run in the plan's state store under its scope (``all``, else ``category:ids``),
    so the next run of the same scope says what is new, what persists and what was resolved."""
    scope = "all" if not (category or only) else f"{category or ''}:{','.join(sorted(only))}"
    store = open_store(plan)
    try:
        return record(store, run, scope, operator_id())
    finally:
        store.close()

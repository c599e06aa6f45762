"""``cutover switch``: take a wave through its window (ready → final pass → switched → settled →
closed, or ``--step rollback``), printing each step. Exit 0: done; 1: refused by an interlock or a
check that didn't hold (listed); 2: could not work.

The settled step's post-phase readiness checks run here and reach the window as conditions
(``post_checks``): runners can't import checks."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from checks.runner import run_checks, select
from cockpit.commands.preflight import warn_before_connecting
from runners.errors import MigrationError
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.safe_text import safe_lines, scrub
from runners.state.open_store import open_store
from runners.window.actor import current_actor
from runners.window.conditions import Condition, wave_objects
from runners.window.driver import Override, Refused, WaveHeld, WindowDriver, WindowResult, vars_of

EXIT_OK, EXIT_REFUSED, EXIT_UNUSABLE = 0, 1, 2


def switch_command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    if args.wave not in plan.waves:
        known = ", ".join(plan.waves) or "none"
        raise MigrationError(f"wave {args.wave!r} is not in the plan (waves: {known})")
    warn_before_connecting(plan)
    store = open_store(plan)
    json_out = args.output == "json"

    def say(line: str) -> None:
        # Progress goes to stderr with --output json, so stdout stays one JSON document.
        print(safe_lines(line), file=sys.stderr if json_out else sys.stdout, flush=True)

    override = Override(args.confirm, args.reason, args.force)
    driver = WindowDriver(plan, store, args.wave, current_actor(), override, say, post_checks)
    try:
        result = driver.run_to(args.step)
    except Refused as refused:
        return _refused(args, driver.result, str(refused), refused.problems)
    except WaveHeld as held:
        return _refused(args, driver.result, str(held), [])
    _emit(args, result.as_dict(), f"wave {args.wave}: {result.stage}")
    return EXIT_OK


def post_checks(plan: Plan, wave: str) -> list[Condition]:
    """The post-phase readiness checks (MX everywhere, the target's SMTP accepting the domains):
    unwaived blockers on the wave's mailboxes and domains fail the condition; the run is not
    recorded as the readiness run (other waves' domains, not switched yet, would block theirs)."""
    run = run_checks(plan, select(), phase="post")
    ours = wave_objects(plan.wave(wave))
    blockers = [
        f"{f.object_id} ({f.check_id}: {f.title})" for f in run.blockers if f.object_id.lower() in ours
    ]
    errors = [f"{o.check_id} ({o.reason})" for o in run.outcomes if o.state == "error"]
    ran = sum(1 for o in run.outcomes if o.state != "skipped")
    detail = f"{ran} check(s) ran, " + (
        f"blockers: {'; '.join(blockers)}" if blockers else "no blocker for the wave"
    )
    if errors:
        detail += f"; could not run: {'; '.join(errors)}"
    return [Condition("post-checks", not blockers, detail)]


def _refused(args: argparse.Namespace, result: WindowResult, message: str, problems: list[str]) -> int:
    data = {**result.as_dict(), "refused": message, "problems": problems}
    data["steps"] = [vars_of(s) for s in result.steps]
    text = "\n".join([f"cutover: {message}", *(f"  {p}" for p in problems)])
    _emit(args, data, text, err=True)
    return EXIT_REFUSED


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str, *, err: bool = False) -> None:
    if args.output == "json":
        print(scrub(json.dumps(data, indent=2, sort_keys=True, default=str)))
    else:
        print(safe_lines(text), file=sys.stderr if err else sys.stdout)

"""``cutover switch``: take a wave through its window (ready → final pass → switched), printing each
step. Exit 0: done; 1: refused by an interlock or a check that didn't hold (listed); 2: could not work."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cockpit.commands.preflight import warn_before_connecting
from runners.errors import MigrationError
from runners.plan.loader import load_plan
from runners.safe_text import safe_lines, scrub
from runners.state.store import StateStore
from runners.window.actor import current_actor
from runners.window.driver import Override, Refused, WaveHeld, WindowDriver, WindowResult, vars_of
from runners.window.pending import NotBuiltYet

EXIT_OK, EXIT_REFUSED, EXIT_UNUSABLE = 0, 1, 2


def switch_command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    if args.wave not in plan.waves:
        known = ", ".join(plan.waves) or "none"
        raise MigrationError(f"wave {args.wave!r} is not in the plan (waves: {known})")
    warn_before_connecting(plan)
    store = StateStore(plan.state_db)
    json_out = args.output == "json"

    def say(line: str) -> None:
        # Progress goes to stderr with --output json, so stdout stays one JSON document.
        print(safe_lines(line), file=sys.stderr if json_out else sys.stdout, flush=True)

    override = Override(args.confirm, args.reason, args.force)
    driver = WindowDriver(plan, store, args.wave, current_actor(), override, say)
    try:
        result = driver.run_to(args.step)
    except Refused as refused:
        return _refused(args, driver.result, str(refused), refused.problems)
    except WaveHeld as held:
        return _refused(args, driver.result, str(held), [])
    except NotBuiltYet as pending:
        _emit(args, {"error": str(pending), "wave": args.wave}, f"cutover: {pending}", err=True)
        return EXIT_UNUSABLE
    _emit(args, result.as_dict(), f"wave {args.wave}: {result.stage}")
    return EXIT_OK


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

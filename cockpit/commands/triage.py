"""``cutover triage``: the helpdesk's answer about one user, as the cockpit's ``u`` gives it. It
reads the state store read-only and writes nothing (the helpdesk's account may not write it)."""

from __future__ import annotations

import argparse
import json

from checks.triage import triage
from cockpit.commands.preflight import warn_before_connecting
from cockpit.triage_text import as_json, render
from runners.plan.loader import load_plan
from runners.safe_text import safe_lines, scrub

EXIT_FOUND, EXIT_NOT_IN_PLAN = 0, 1


def triage_command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    warn_before_connecting(plan)  # the live checks log in on both sides
    result = triage(plan, args.user, compare=not args.no_compare)
    if args.output == "json":
        print(scrub(json.dumps(as_json(result), indent=2, sort_keys=True, default=str)))
    else:
        print(safe_lines(render(result)))
    return EXIT_FOUND if result.entry is not None else EXIT_NOT_IN_PLAN

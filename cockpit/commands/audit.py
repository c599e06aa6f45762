"""``cutover audit``: every operator action the state store keeps, with who, when and its parameters."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from runners.errors import MigrationError
from runners.plan.loader import load_plan
from runners.safe_text import safe_lines, scrub
from runners.state.open_store import open_store, store_exists, store_location


def audit_command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    if args.wave and args.wave not in plan.waves:
        raise MigrationError(
            f"wave {args.wave!r} is not in the plan (waves: {', '.join(plan.waves) or 'none'})"
        )
    if not store_exists(plan):
        raise MigrationError(f"no state store at {store_location(plan)}: nothing has run yet")
    entries = open_store(plan).audit_trail(args.wave)
    if args.output == "json":
        print(
            scrub(
                json.dumps({"actions": [asdict(e) for e in entries]}, indent=2, sort_keys=True, default=str)
            )
        )
        return 0
    lines = [f"{'when':<19}  {'who':<28} {'action':<12} {'wave':<10} detail"]
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at))
        where = f"{e.mailbox}: " if e.mailbox else ""
        params = f"  {json.dumps(e.params, sort_keys=True, default=str)}" if e.params else ""
        lines.append(
            f"{when:<19}  {e.who[:28]:<28} {e.action[:12]:<12} {(e.wave or '-')[:10]:<10} {where}{e.detail}{params}"
        )
    if not entries:
        lines.append("(no operator action recorded)")
    print(safe_lines("\n".join(lines)))
    return 0

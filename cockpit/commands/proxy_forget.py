"""``cutover proxy forget USER``: drop every password the proxy captured for a user (as the route's user
or as the login a backend accepted), at once and for good. Nothing is revealed or decrypted."""

from __future__ import annotations

import argparse
import json

from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.safe_text import safe, scrub
from runners.state.open_store import open_store


def forget_user(plan: Plan, user: str) -> int:
    """Drop ``user``'s captured passwords from the plan's store; returns how many there were."""
    store = open_store(plan)
    try:
        return store.forget_captured(user)
    finally:
        store.close()


def forget_command(args: argparse.Namespace) -> int:
    """``args``: ``plan``, ``user`` and ``output`` (text | json). Exit 0: nothing is kept for the user now."""
    plan = load_plan(args.plan)
    dropped = forget_user(plan, args.user)
    if getattr(args, "output", "text") == "json":
        print(scrub(json.dumps({"user": args.user, "forgotten": dropped})))
    elif dropped:
        print(safe(f"forgot {dropped} captured password(s) of {args.user}"))
    else:
        print(safe(f"no captured password was kept for {args.user}"))
    return 0

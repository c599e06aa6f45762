"""``cutover demo``: start the embedded lab, run the scenario on it, print the outcome.

The state (plan, mailbox list, state store, logs) goes to a temporary directory that is removed
at the end, or with ``--keep`` to ``$XDG_CACHE_HOME/cutover/demo`` (``~/.cache/cutover/demo``),
replacing the previous demo's. The lab's servers live in this process and stop with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cockpit.demo.report import demo_data, demo_text
from cockpit.demo.scenario import run_scenario
from lab.embedded import Lab, LabError
from lab.plan import MARKER, write_plan
from runners.errors import MigrationError
from runners.plan.loader import load_plan


def kept_state_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cutover" / "demo"


def demo_command(args: argparse.Namespace) -> int:
    try:
        return _interactive(args) if not args.headless else _headless(args)
    except LabError as exc:
        raise MigrationError(str(exc)) from exc  # the CLI's one line and exit 2


def _headless(args: argparse.Namespace) -> int:
    with _state_dir(args.keep) as state_dir, Lab() as lab:
        if getattr(args, "target", "imap") == "ews":
            lab.start_ews()
        elif getattr(args, "target", "imap") == "graph":
            lab.start_graph()
        result = run_scenario(lab, state_dir, say=lambda line: print(f"demo: {line}", file=sys.stderr))
        report = demo_data(result, kept=args.keep)
        text = demo_text(result, report) if args.output == "text" else ""
    print(json.dumps(report, indent=2, sort_keys=True, default=str) if args.output == "json" else text)
    return 0 if report["ok"] else 1


def _interactive(args: argparse.Namespace) -> int:
    """The lab, a readiness run, then the cockpit on it: the user launches the pilot and watches.

    The lab's servers run in this process while the cockpit is open; a wave launched from the
    cockpit runs in its own (detached) process and talks to them over loopback like to any server.
    """
    from checks.runner import run_checks, select
    from cockpit.app import CockpitApp
    from cockpit.commands.check import record_run
    from cockpit.keymap import find_keymap

    keys = find_keymap(args.keys)  # before the lab starts: a bad keymap exits 2 at once
    if args.no_color:
        os.environ["NO_COLOR"] = "1"
    with _state_dir(args.keep) as state_dir, Lab() as lab:
        if getattr(args, "target", "imap") == "ews":
            lab.start_ews()
        elif getattr(args, "target", "imap") == "graph":
            lab.start_graph()
        plan = load_plan(write_plan(lab, state_dir))
        print("cutover demo: lab started on 127.0.0.1; running the readiness checks…", file=sys.stderr)
        record_run(plan, run_checks(plan, select()))
        CockpitApp(plan, keys=keys, ansi=args.ansi).run()
    print(closing_words(state_dir, plan.path, kept=args.keep), file=sys.stderr)
    return 0


def closing_words(state_dir: Path, plan: Path, *, kept: bool) -> str:
    """What the interactive demo says when the cockpit closes: where the state is, if it was kept."""
    if not kept:
        return "cutover demo: lab stopped; state removed (keep it with --keep)"
    return (
        f"cutover demo: lab stopped; state kept in {state_dir} (plan {plan}): "
        f"`cutover status --plan {plan}` reads it; the next `cutover demo --keep` replaces it"
    )


@contextlib.contextmanager
def _state_dir(keep: bool) -> Iterator[Path]:
    """The kept state directory (emptied of the previous demo), or a temporary one removed at the end."""
    path = _prepare_kept() if keep else Path(tempfile.mkdtemp(prefix="cutover-demo-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def _prepare_kept() -> Path:
    """The kept state directory, emptied of the previous demo (and of nothing else)."""
    path = kept_state_dir()
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise MigrationError(f"{path} exists and was not written by cutover demo: not touching it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path

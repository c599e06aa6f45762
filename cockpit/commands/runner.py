"""``cutover runner``: one long-lived worker of a fleet (``runners.engine.fleet``), one per host.

It runs in the foreground (a service manager keeps it: systemd, a container); its log goes to the
state directory like a run's. The first SIGTERM or SIGINT finishes each worker's current batch,
gives its mailboxes back and exits 0; a second one closes every connection and exits at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading

from cockpit.commands.preflight import warn_before_connecting
from cockpit.commands.run import log_to, stop_on_signals
from runners.engine.fleet import FleetRunner
from runners.engine.lease_keeper import default_name
from runners.memory import tune_for_target
from runners.plan.loader import load_plan
from runners.safe_text import safe


def runner_command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    tune_for_target(plan.target.type)  # an IMAP target's run has room: fewer page faults
    warn_before_connecting(plan)
    name = args.name or default_name()
    log_path = plan.state_dir / "logs" / f"runner-{_file_safe(name)}.log"
    log_to(log_path)
    stop = threading.Event()
    stop_on_signals(stop)
    workers = args.workers or plan.workers
    print(
        f"runner {safe(name)}: {workers} worker(s), lease {plan.lease_seconds:g} s; log: {log_path}",
        file=sys.stderr,
    )
    result = FleetRunner(plan, name, workers, stop).run()
    logging.getLogger("cutover").info("runner %s stopped", name)
    summary = {
        "name": name,
        "mailboxes": result.mailboxes,
        "copied": result.copied,
        "runs": sorted(result.runs),
    }
    if args.output == "json":
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"runner {safe(name)} stopped: {result.mailboxes} mailbox(es) worked, {result.copied} message(s) copied"
        )
    return 0


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

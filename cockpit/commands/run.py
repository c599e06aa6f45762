"""``cutover run``: in the foreground with progress, or detached with its log in the state dir."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cockpit.commands.preflight import warn_before_connecting
from runners.engine.progress import PlainProgress, TtyProgress
from runners.engine.stats import RunStats
from runners.engine.summary import summary_data, summary_text
from runners.engine.wave import run_wave, select_mailboxes
from runners.imap import watchdog
from runners.memory import tune_for_target
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.safe_text import SafeFormatter, safe_lines, scrub
from runners.state.private import private_file


def run_command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    tune_for_target(plan.target.type)  # an IMAP target's run has room: fewer page faults
    select_mailboxes(plan, args.wave, args.mailbox)  # fail fast, before detaching
    warn_before_connecting(plan)
    if args.detach:
        return _detach(plan, args)
    log_path = _setup_logging(plan)
    stats = RunStats()
    stop = threading.Event()
    stop_on_signals(stop)
    mode = args.progress
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() and args.output == "text" else "plain"
    display = {"bar": TtyProgress, "plain": PlainProgress}.get(mode)
    print(f"log: {log_path}", file=sys.stderr)
    with display(stats) if display is not None else contextlib.nullcontext():
        result = run_wave(
            plan,
            args.wave,
            workers=args.workers,
            only=args.mailbox,
            stats=stats,
            stop=stop,
            retry_failed=args.retry_failed,
        )
    if args.output == "json":
        print(scrub(json.dumps(summary_data(result), indent=2, sort_keys=True)))
    else:
        print(safe_lines(summary_text(result)))
    logging.getLogger("cutover").info("run %s finished: %s", result.run_id, result.status)
    if result.status == "interrupted":
        return 130
    return 0 if result.status == "ok" else 1


def _setup_logging(plan: Plan) -> Path:
    path = plan.state_dir / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log_to(path)
    return path


def log_to(path: Path) -> logging.Handler:
    """Send the engine's log lines (the ``cutover`` logger) to ``path`` too; remove the handler to stop."""
    private_file(path)  # 0600 in a 0700 directory, whatever the umask
    handler = logging.FileHandler(path, encoding="utf-8")
    # Log lines carry folder names and server texts: one safe line each (runners.safe_text).
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
    logger = logging.getLogger("cutover")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


#: After a second signal, how long the workers get to record where they stopped before the process exits.
ABORT_GRACE_SECONDS = 3.0


def stop_on_signals(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: finish the current batch, record everything, exit. Second: stop now.

    Raising in the main thread would not do: it waits for the worker threads, and a worker blocked
    in a read of a silent or trickling server never returns. So the second signal closes every
    connection (blocked reads wake up and the workers unwind, recording the mailbox as pending) and
    exits after ``ABORT_GRACE_SECONDS`` whatever still runs (the next run marks that run dead).
    """

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            abort_now()
            return
        stop.set()
        print("\nstopping after the current batch (again to abort at once)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def abort_now() -> None:
    """Close every server connection now and exit (status 130) unless the run has ended by then."""
    print("\naborting: closing every connection", file=sys.stderr)
    watchdog.abort_all()
    deadline = threading.Timer(ABORT_GRACE_SECONDS, os._exit, args=(130,))
    deadline.daemon = True
    deadline.start()


def runner_argv(
    plan_path: Path,
    wave: str,
    *,
    output: str,
    progress: str | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    mailboxes: Sequence[str] = (),
    detach: bool = False,
) -> list[str]:
    """The command line of ``cutover run`` in a child process (the detached runner, or the cockpit's launch)."""
    argv = [sys.executable, "-m", "cockpit.cli", "run", "--plan", str(plan_path), "--wave", wave]
    if detach:
        argv.append("--detach")
    if progress:
        argv += ["--progress", progress]
    argv += ["--output", output]
    if workers:
        argv += ["--workers", str(workers)]
    if retry_failed:
        argv.append("--retry-failed")
    for mailbox in mailboxes:
        argv += ["--mailbox", mailbox]
    return argv


def _detach(plan: Plan, args: argparse.Namespace) -> int:
    # Here, not at the top: a run in the foreground has no use for the window's modules (start-up).
    from cockpit.window_step import start_detached

    argv = runner_argv(
        Path(args.plan).resolve(),
        args.wave,
        output=args.output,
        progress="plain",
        workers=args.workers,
        retry_failed=args.retry_failed,
        mailboxes=args.mailbox,
    )
    # A new session: no controlling terminal, so a dropped SSH session can't send it SIGHUP.
    child, out = start_detached(plan, args.wave, argv, kind="detached")
    message = {"pid": child.pid, "log": str(out), "wave": args.wave}
    if args.output == "json":
        print(json.dumps(message))
    else:
        print(
            f"started in the background: pid {child.pid}, wave {args.wave}\n"
            f"follow it:  tail -f {out}\n"
            f"or:         cutover status --plan {args.plan}"
        )
    return 0

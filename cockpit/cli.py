"""The ``cutover`` command. Subcommands import what they need lazily so ``--help`` is instant.

Exit codes: 0 success, 1 the work ran but something is not right (messages not copied, differences
found), 2 the command could not do its work (invalid plan, unreachable state, bad arguments).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from runners.safe_text import safe, safe_lines, scrub

EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2

_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser; given ``argv`` naming a command, with that command's arguments only.

    Each argument costs argparse a help formatter (a terminal size query) and each subcommand its
    translations: ~8 ms of CPU for them all, a start-up cost of every ``cutover run``. What is parsed,
    printed and refused is the same: a subcommand's errors and help come from its own parser, and
    ``cutover`` with no known command (``--help``, a typo) gets every one.
    """
    parser = argparse.ArgumentParser(
        prog="cutover",
        description="Moves whole mail platforms: migrate mailboxes wave by wave, prove nothing was lost.",
        epilog="Exit codes: 0 ok, 1 problems found (not everything copied / differences), 2 could not run.",
    )
    parser.add_argument("--version", action="store_true", help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = _command_in(sys.argv[1:] if argv is None else argv)
    for name, add in _COMMANDS.items():
        if wanted is None or name == wanted:
            add(sub)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` starts with (after ``--version``, ``cutover``'s one flag that doesn't
    print its help), or None: no command we know, or ``cutover``'s own help asked for first."""
    for arg in argv:
        if arg != "--version":
            return arg if arg in _COMMANDS else None
    return None


def _common(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("--plan", required=True, help="the plan file (TOML)")
    if output:
        p.add_argument("--output", choices=("text", "json"), default="text", help="output format")


def _add_run(sub: _Commands) -> None:
    run = sub.add_parser(
        "run",
        help="copy every mailbox of a wave (a rerun is a delta pass)",
        description="Copy every mailbox of a wave. Running it again copies only what is new "
        "and syncs changed flags. Safe to interrupt (even kill -9) and rerun.",
    )
    _common(run)
    run.add_argument("--wave", required=True, help="wave name from the mailbox list (e.g. pilot)")
    run.add_argument("--workers", type=int, help="mailboxes migrated at once (default: plan's [run] workers)")
    run.add_argument(
        "--mailbox",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="only this source mailbox (repeatable)",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="only retry what failed: failed and skipped messages of partial mailboxes, and mailboxes that failed "
        "or were cancelled as a whole; new messages wait for the next normal pass",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="run in the background, detached from this terminal; log in the state directory",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "none"),
        default="auto",
        help="progress display (auto: bars on a terminal, plain lines otherwise)",
    )


def _add_status(sub: _Commands) -> None:
    status = sub.add_parser(
        "status",
        help="where every mailbox stands, from the state store",
        description="Show runs, mailboxes and every message not copied with its reason. Exit 0: everything "
        "listed is copied or not started yet; 1: something needs attention (a mailbox failed, a folder not "
        "copied, messages failed, skipped or left pending by an interrupted run); 2: the state can't be read.",
    )
    _common(status)
    status.add_argument("--wave", help="only this wave")
    status.add_argument("--mailbox", action="append", default=[], metavar="ADDRESS", help="only this mailbox")
    status.add_argument(
        "--failures", action="store_true", help="list every message not copied, with its reason"
    )


def _add_verify(sub: _Commands) -> None:
    verify = sub.add_parser(
        "verify",
        help="compare source and target; exit 1 if anything is missing",
        description="Compare every folder of the source with the target (counts and bytes; "
        "with --deep, SHA-256 of every message) and explain every difference.",
    )
    _common(verify)
    verify.add_argument("--wave", required=True, help="wave to verify")
    verify.add_argument("--mailbox", action="append", default=[], metavar="ADDRESS", help="only this mailbox")
    verify.add_argument("--deep", action="store_true", help="also compare a SHA-256 of every message body")
    verify.add_argument("--workers", type=int, help="mailboxes verified at once")


def _add_skip(sub: _Commands) -> None:
    skip = sub.add_parser(
        "skip",
        help="decide not to copy one failed or skipped message, with a reason",
        description="Record an operator's decision that a message that failed (or was skipped) is not to be "
        "copied: reruns leave it alone, and status and verify list it as waived with the reason and who decided.",
    )
    _common(skip)
    skip.add_argument("--mailbox", required=True, help="source mailbox")
    skip.add_argument(
        "--folder", required=True, help="source folder, as status shows it (e.g. INBOX, Archive/2023)"
    )
    skip.add_argument("--uid", required=True, type=int, help="the message's UID in that folder")
    skip.add_argument("--reason", required=True, help="why it is not copied (kept in the ledger)")


def _add_tui(sub: _Commands) -> None:
    tui = sub.add_parser(
        "tui",
        help="open the cockpit (Textual TUI) on a plan's state store",
        description="The cockpit watches the state store: waves, mailboxes, failures, the log. Launching a wave "
        "starts a detached runner, so closing the cockpit never stops a migration. `cutover` alone opens it on "
        "./plan.toml when there is one.",
    )
    _common(tui, output=False)
    tui.add_argument(
        "--read-only",
        action="store_true",
        help="helpdesk mode: every action that changes anything is hidden and refused",
    )
    _display_options(tui)


def _add_control(sub: _Commands) -> None:
    control = sub.add_parser(
        "control",
        help="pause, resume or cancel a running wave or one mailbox",
        description="Ask the runner of a wave to pause, resume or cancel, through the state store: the request "
        "takes effect after the current batch (everything copied so far is recorded). Works from any "
        "terminal, while the run goes on in another session or detached.",
    )
    _common(control)
    control.add_argument("action", choices=("pause", "resume", "cancel"))
    control.add_argument("--wave", help="only runs of this wave (default: any running wave)")
    control.add_argument("--mailbox", help="only this source mailbox (default: every mailbox of the wave)")


def _add_check(sub: _Commands) -> None:
    check = sub.add_parser(
        "check",
        help="readiness checks: find what will break before anything moves",
        description="Run the readiness checks (DNS, directory, source, capacity, target) and list every "
        "finding with its evidence and remediation. Exit 0: no blocker; 1: blockers; 2: incomplete run or "
        "invalid plan.",
    )
    check.add_argument("--plan", help="the plan file (TOML); required unless --list")
    check.add_argument(
        "--list", action="store_true", help="list every check (id, category, phase, title) and exit"
    )
    check.add_argument(
        # The categories that have checks (a test holds this to the catalog; importing it here would
        # slow every command down).
        "--category",
        choices=("dns", "directory", "source", "capacity", "target"),
        help="only this category",
    )
    check.add_argument(
        "--only", action="append", default=[], metavar="ID", help="only this check (repeatable)"
    )
    check.add_argument("--output", choices=("table", "json", "junit", "markdown"), default="table")
    check.add_argument(
        "--phase", choices=("pre", "post"), default="pre", help="before the MX switch (default) or after it"
    )


def _add_switch(sub: _Commands) -> None:
    # The cutover window (#11): `switch` and `audit`.
    switch = sub.add_parser(
        "switch",
        help="take a wave through its window: ready, final pass, switched",
        description="Run a wave forward from where it stands (copying, ready, final pass) to switched, or to the "
        "named step, printing each step; each is recorded with who, when and its parameters (cutover audit). "
        "ready checks the first pass, every failure decided, readiness blockers and the last delta pass against "
        "the window; the final pass is one more delta pass, timed; the switch sets the directory's routing "
        "attribute and, for a domain whose last wave this is, its DNS, confirmed on every authoritative server. "
        "An interrupted switch resumes where it stopped. Exit 0: done; 1: refused by an interlock or a check "
        "that didn't hold (listed); 2: could not work (plan, store, server unreachable).",
    )
    _common(switch)
    switch.add_argument("--wave", required=True, help="the wave to move")
    switch.add_argument(
        "--step",
        choices=("ready", "final-pass", "switch", "settle", "close", "rollback"),
        default="switch",
        help="go as far as this step (default: switch), or roll a switched wave back",
    )
    switch.add_argument(
        "--confirm",
        metavar="WAVE",
        help="the wave's name typed back: go on despite a condition that doesn't hold",
    )
    switch.add_argument("--reason", help="why (required with --confirm or --force; kept in the audit trail)")
    switch.add_argument(
        "--force", action="store_true", help="as --confirm, recorded the same (needs --reason)"
    )


def _add_audit(sub: _Commands) -> None:
    audit = sub.add_parser(
        "audit",
        help="every operator action with who, when and its parameters",
        description="List every operator action the state store keeps: the window's steps (ready, final pass, "
        "switch), runs launched, pause/resume/cancel requests, waived messages and the cockpit's actions; who "
        "(OS user, host, SSH client), when, and the exact parameters.",
    )
    _common(audit)
    audit.add_argument("--wave", help="only this wave")


def _add_triage(sub: _Commands) -> None:
    triage = sub.add_parser(
        "triage",
        help="the helpdesk's answer about one user (the cockpit's u)",
        description="For one user (any address or alias): where their mail is served now (legacy or target, "
        "since when), whether their mailbox is complete, late mail caught for their wave, the last failure in "
        "the server's words, readiness findings, and live checks (directories, logins, the comparison). "
        "Reads the state store only (read-only). Exit 0: found; 1: not a mailbox of the plan.",
    )
    _common(triage)
    triage.add_argument("--user", required=True, metavar="ADDRESS", help="any of the user's addresses")
    triage.add_argument(
        "--no-compare", action="store_true", help="skip the live comparison of source and target"
    )


def _add_demo(sub: _Commands) -> None:
    demo = sub.add_parser(
        "demo",
        help="run an embedded lab (legacy and target mail servers, LDAP, DNS, SMTP) and a pilot on it",
        description="Start an embedded lab on loopback ports (legacy IMAP/POP3 with seeded problems, a "
        "size-limited IMAP target, LDAP directories, DNS, an SMTP hub) and run the readiness checks on it, then "
        "open the cockpit: launch the pilot wave (L) and watch it, drill into its failures. With --headless: "
        "run the checks, the pilot and its verification with the real engine and print what was found "
        "(exit 0: every seeded problem was found and explained; 1: not as expected; 2: the demo could not run).",
    )
    demo.add_argument(
        "--headless", action="store_true", help="no TUI: run the scenario and print the outcome"
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the plan and state in ~/.cache/cutover/demo (else a temp dir)",
    )
    demo.add_argument("--output", choices=("text", "json"), default="text", help="output format")
    demo.add_argument(
        "--target",
        choices=("imap", "ews", "graph"),
        default="imap",
        help="the target: the lab's IMAP server, Exchange (the EWS emulator) or Microsoft 365 (the Graph emulator)",
    )
    _display_options(demo)


def _add_proxy(sub: _Commands) -> None:
    proxy = sub.add_parser(
        "proxy",
        help="the routing proxy: one IMAP/POP3/SMTP front door that sends each user to legacy or target",
        description="run (default): serve the plan's [proxy] listeners in the foreground until SIGINT/SIGTERM "
        "(exit 0; 2 when it can't start). route USER: where USER goes now and the login each backend is given "
        "(exit 0: decided by the store, the directory or a static override; 1: only by the default backend). "
        "forget USER: drop USER's captured password. rekey: seal every captured password under the current key.",
    )
    _common(proxy)
    # Written together (argparse can't fill positionals on both sides of --plan): proxy route USER --plan P.
    proxy.add_argument(
        "action", nargs="?", choices=("run", "route", "forget", "rekey"), default="run", help="what to do"
    )
    proxy.add_argument("user", nargs="?", metavar="USER", help="the user (route, forget)")


def _add_runner(sub: _Commands) -> None:
    runner = sub.add_parser(
        "runner",
        help="a long-lived worker of a fleet: takes mailboxes of any launched wave (one per host)",
        description="Take mailboxes of any wave launched on the plan's state store (cutover run, the cockpit's "
        "L) under a lease, and wait for the next launch when there is nothing to take: a fleet of hosts is this "
        "command once per host. SIGTERM or SIGINT: finish the current batch, give the mailboxes back, exit 0 "
        "(again: close every connection and exit at once). Exit 2: the plan or the state store can't be used.",
    )
    _common(runner)
    runner.add_argument("--name", help="this runner's name in the store (default: hostname:pid)")
    runner.add_argument(
        "--workers", type=int, help="mailboxes worked at once (default: plan's [run] workers)"
    )


_COMMANDS: dict[str, Callable[[_Commands], None]] = {
    "run": _add_run,
    "status": _add_status,
    "verify": _add_verify,
    "skip": _add_skip,
    "tui": _add_tui,
    "control": _add_control,
    "check": _add_check,
    "switch": _add_switch,
    "audit": _add_audit,
    "triage": _add_triage,
    "demo": _add_demo,
    "proxy": _add_proxy,
    "runner": _add_runner,
}


def _display_options(p: argparse.ArgumentParser) -> None:
    """The cockpit's keys and colours (``cutover tui`` and ``cutover demo``)."""
    p.add_argument(
        "--keys",
        metavar="FILE",
        help='keymap file ([keys] launch = "ctrl+l"); default: $XDG_CONFIG_HOME/cutover/keys.toml '
        "(~/.config/cutover/keys.toml) if it exists",
    )
    p.add_argument(
        "--ansi",
        action="store_true",
        help="use the terminal's own 16 colours (Textual's ansi-dark theme): for SSH and poor terminals",
    )
    p.add_argument(
        "--no-color",
        action="store_true",
        help="no colour at all, as with NO_COLOR=1 (the cursor is shown in reverse video)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if args.version:
        print(f"cutover {_version()}")
        return EXIT_OK
    if args.command is None:
        if Path("plan.toml").is_file():  # `cutover` in a plan's directory opens the cockpit on it
            args = parser.parse_args(["tui", "--plan", "plan.toml"])
        else:
            parser.print_help()
            return EXIT_UNUSABLE
    import sqlite3

    from cockpit.errors import CockpitError
    from runners.errors import MigrationError
    from runners.memory import tune_allocator

    tune_allocator()  # before any worker thread: see runners/memory.py

    try:
        handlers = {
            "run": _run,
            "status": _status,
            "verify": _verify,
            "check": _check,
            "skip": _skip,
            "control": _control,
            "tui": _tui,
            "demo": _demo,
            "switch": _switch,
            "audit": _audit,
            "triage": _triage,
            "proxy": _proxy,
            "runner": _runner,
        }
        handler = handlers[args.command]
        code = handler(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
        return code
    except (MigrationError, CockpitError) as exc:
        _fail(args, str(exc))
        return EXIT_UNUSABLE
    except sqlite3.DatabaseError as exc:  # a corrupt or unreadable state.db: one line, not a traceback
        _fail(args, f"can't read the state store: {exc}")
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cutover check --list | head`: the reader has what it wanted
        # Python would complain again while flushing the dead stdout at exit: point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE
    except Exception as exc:  # a bug of ours: its traceback, never its frames' local variables
        import traceback

        traceback.print_exception(exc, file=sys.stderr)  # the stdlib format has no locals
        _fail(args, f"unexpected error, please report it: {type(exc).__name__}")
        return EXIT_UNUSABLE


def _version() -> str:
    """The installed distribution's version (a source checkout that was never installed has none)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cutover-cockpit")
    except PackageNotFoundError:
        return "(not installed: a source checkout)"


def _fail(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "output", "text") == "json":
        print(scrub(json.dumps({"error": message})))
    else:
        print(f"cutover: error: {safe(message)}", file=sys.stderr)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print a command's result. Its texts come from outside: JSON escapes every control itself,
    text shows them (``runners.safe_text``); known secrets are scrubbed from both."""
    if args.output == "json":
        print(scrub(json.dumps(data, indent=2, sort_keys=True, default=str)))
    else:
        print(safe_lines(text))


def _run(args: argparse.Namespace) -> int:
    # The run's imports make ~25,000 objects the collector tracks, nearly all kept for good: left
    # on, it runs ~35 collections over them while they import; frozen after, the run's own
    # collections don't traverse them again.
    gc.disable()
    try:
        from cockpit.commands.run import run_command
    finally:
        gc.freeze()
        gc.enable()
    # A copy makes few cycles but many short-lived containers (a batch's lists and tuples, a
    # message's metadata): at the default 700 allocations the young generation was collected ~65
    # times a run of 12,000 messages (36 ms of CPU, gc.callbacks); every 10,000: 6 times, 6 ms.
    gc.set_threshold(10_000, 10, 10)
    return run_command(args)


def _skip(args: argparse.Namespace) -> int:
    from runners.plan.loader import load_plan
    from runners.state.open_store import open_store
    from runners.state.operators import operator_label

    plan = load_plan(args.plan)
    store = open_store(plan)
    count = store.waive_message(args.mailbox, args.folder, args.uid, args.reason, operator_label())
    if not count:
        _fail(args, f"no failed or skipped message UID {args.uid} in {args.mailbox} {args.folder}")
        return EXIT_PROBLEMS
    _emit(args, {"waived": count}, f"{args.mailbox} {args.folder} UID {args.uid}: not copied ({args.reason})")
    return EXIT_OK


def _tui(args: argparse.Namespace) -> int:
    from cockpit.app import run_cockpit
    from cockpit.keymap import find_keymap

    keys = find_keymap(args.keys)  # checked before the screen is taken: errors exit 2 with file:line
    _open_store(Path(args.plan), read_only=args.read_only)  # likewise: one line, not a dead poller
    _warn_before_connecting(Path(args.plan))  # the triage and the failure view connect
    if args.no_color:
        os.environ["NO_COLOR"] = "1"  # Textual reads it when the app is created
    return run_cockpit(Path(args.plan), read_only=args.read_only, keys=keys, ansi=args.ansi)


def _warn_before_connecting(plan_path: Path) -> None:
    from cockpit.commands.preflight import warn_before_connecting
    from runners.plan.loader import load_plan

    warn_before_connecting(load_plan(plan_path))


def _open_store(plan_path: Path, *, read_only: bool) -> None:
    """Open the plan's state store once, so that one that can't be used raises ``StoreError`` here."""
    from runners.plan.loader import load_plan
    from runners.state.open_store import open_store

    store = open_store(load_plan(plan_path), read_only=read_only)
    store.connect()
    store.close()


def _control(args: argparse.Namespace) -> int:
    from runners.engine.control import request
    from runners.plan.loader import load_plan
    from runners.state.open_store import open_store
    from runners.state.operators import operator_label

    plan = load_plan(args.plan)
    if args.wave and args.wave not in plan.waves:
        raise _unknown_wave(args.wave, plan.waves)
    if args.mailbox and args.mailbox not in {m.source for m in plan.mailboxes}:
        _fail(args, f"{args.mailbox} is not a mailbox of the plan")
        return EXIT_UNUSABLE
    store = open_store(plan)
    request_id = request(
        store, args.action, wave=args.wave, mailbox=args.mailbox, requested_by=operator_label()
    )
    running = store.running_runs(args.wave)
    scope = (
        f"mailbox {args.mailbox}"
        if args.mailbox
        else f"wave {args.wave}"
        if args.wave
        else "every running wave"
    )
    note = "" if running else " (no run is active now: it applies to none; start the wave again to continue)"
    _emit(
        args,
        {"request": request_id, "action": args.action, "scope": scope, "active_runs": len(running)},
        f"{args.action} requested for {scope}{note}",
    )
    return EXIT_OK


def _unknown_wave(wave: str, waves: tuple[str, ...]) -> Exception:
    from runners.errors import MigrationError

    return MigrationError(f"wave {wave!r} is not in the plan (waves: {', '.join(waves) or 'none'})")


def _check(args: argparse.Namespace) -> int:
    from cockpit.commands.check import check_command

    return check_command(args)


def _switch(args: argparse.Namespace) -> int:
    from cockpit.commands.switch import switch_command

    return switch_command(args)


def _audit(args: argparse.Namespace) -> int:
    from cockpit.commands.audit import audit_command

    return audit_command(args)


def _triage(args: argparse.Namespace) -> int:
    from cockpit.commands.triage import triage_command

    return triage_command(args)


def _demo(args: argparse.Namespace) -> int:
    from cockpit.demo.command import demo_command

    return demo_command(args)


def _status(args: argparse.Namespace) -> int:
    from runners.errors import MigrationError
    from runners.plan.loader import load_plan
    from runners.state.read_models.status import status_data, status_text

    plan = load_plan(args.plan)
    if plan.state_dir.exists() and not plan.state_dir.is_dir():
        raise MigrationError(f"the state directory {plan.state_dir} is not a directory: can't read the state")
    data = status_data(
        plan, wave=args.wave, mailboxes=args.mailbox, failures=args.failures or args.output == "json"
    )
    _emit(args, data, status_text(data, failures=args.failures))
    return status_exit_code(data)


def status_exit_code(data: dict[str, Any]) -> int:
    """1 when a mailbox of the report needs attention, else 0 (everything copied, or not started yet).

    Attention: a mailbox that failed as a whole, a folder not copied, messages failed or skipped, or
    left pending by an interrupted run (a mailbox being copied right now always has a batch pending:
    not counted). Waived messages (``cutover skip``) and cancelled or paused mailboxes are decisions,
    not problems, so a partial mailbox whose every uncopied message was waived needs none.
    """
    from runners.state.statuses import MailboxState

    for m in data["mailboxes"]:
        if m["state"] == MailboxState.FAILED or m["failed"] or m["skipped"]:
            return EXIT_PROBLEMS
        if m["pending"] and m["state"] != MailboxState.RUNNING:
            return EXIT_PROBLEMS
    return EXIT_PROBLEMS if data.get("folder_errors") else EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from cockpit.commands.preflight import warn_before_connecting
    from runners.plan.loader import load_plan
    from runners.verify import verify_text, verify_wave

    plan = load_plan(args.plan)
    warn_before_connecting(plan)
    report = verify_wave(plan, args.wave, only=args.mailbox, deep=args.deep, workers=args.workers)
    _emit(args, report.as_dict(), verify_text(report))
    if report.incomplete:
        return EXIT_UNUSABLE
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _proxy(args: argparse.Namespace) -> int:
    from cockpit.commands.proxy import proxy_command

    return proxy_command(args)


def _runner(args: argparse.Namespace) -> int:
    from cockpit.commands.runner import runner_command

    return runner_command(args)


if __name__ == "__main__":
    sys.exit(main())

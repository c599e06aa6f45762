"""The cutover window's speed (issue #11): the final pass is the users' downtime.

Builds 1,000 mailboxes in a private source Dovecot (small Maildirs written straight to disk), copies
them once into a private target Dovecot, then gives 5 % of them new mail and takes the wave through
``ready → final pass → switched`` with the window's own driver (``--force``: no readiness run here).
Prints the final pass (a delta pass over all 1,000, copying the new mail), a delta pass with nothing
new for comparison, the first pass's throughput (to estimate the new mail's own copy time) and the
switch step's own time (here: the rollback's UIDNEXT marks of every folder of the 1,000 mailboxes;
the plan has no ``[switch]``, so no directory or DNS: the tests time those, see docs/window.md).

    .venv/bin/python bench/window_bench.py [--mailboxes 1000] [--messages 10] [--share 0.05] [--workers 8]

A script, not a test: nothing in CI runs it. Needs Dovecot, as the test suite does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.extend([str(REPO), str(REPO / "tests")])

import dovecot_lab as lab  # noqa: E402
from servers.dovecot import DovecotServer  # noqa: E402

from runners.engine.wave import run_wave  # noqa: E402
from runners.plan.loader import load_plan  # noqa: E402
from runners.plan.model import Plan  # noqa: E402
from runners.state.store import StateStore  # noqa: E402
from runners.state.wave_step_rows import Actor  # noqa: E402
from runners.window.driver import Override, WindowDriver  # noqa: E402

WAVE = "bench"


def message(user: str, n: int, size: int) -> bytes:
    head = f"From: sender{n}@example.test\r\nTo: {user}@example.test\r\nSubject: {user} {n}\r\n"
    head += f"Message-ID: <{user}.{n}@bench.test>\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n\r\n"
    return head.encode() + (b"x" * 76 + b"\r\n") * max(1, size // 78)


def write_maildir(server: DovecotServer, user: str, messages: list[bytes], start: int) -> int:
    """Deliver ``messages`` into the user's Maildir ``new/`` (Dovecot picks them up); returns bytes."""
    new = server.maildir(user) / "new"
    for sub in ("new", "cur", "tmp"):
        (server.maildir(user) / sub).mkdir(parents=True, exist_ok=True)
    total = 0
    for i, body in enumerate(messages, start):
        (new / f"{int(time.time())}.M{i}P{os.getpid()}.{socket.gethostname()}").write_bytes(body)
        total += len(body)
    account = server._account  # the mail processes' account must own what it moves new/ → cur/
    for path in (server.mail_root / user, *(server.mail_root / user).rglob("*")):
        os.chown(path, account.uid, account.gid)
    return total


def users(count: int) -> list[str]:
    return [f"u{i:04d}" for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=10, help="messages per mailbox before the window")
    parser.add_argument("--share", type=float, default=0.05, help="share of mailboxes with new mail")
    parser.add_argument("--new", type=int, default=2, help="new messages per such mailbox")
    parser.add_argument("--size", type=int, default=8000, help="bytes per message")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="window-bench-"))
    names = users(args.mailboxes)
    source, target = DovecotServer(), DovecotServer()
    try:
        for server in (source, target):
            for name in names:
                server.users[name] = f"{name}-pw"  # written once at start: no per-user wait
            server.start()
        os.environ["SRC_MASTER_PW"], os.environ["DST_MASTER_PW"] = (
            source.master_password,
            target.master_password,
        )
        corpus_bytes = sum(
            write_maildir(source, u, [message(u, i, args.size) for i in range(args.messages)], 0)
            for u in names
        )
        path = lab.write_plan(work, source, target, mailboxes=tuple((u, u, WAVE) for u in names),
                              tail=f"[run]\nworkers = {args.workers}\n\n[window]\nhours = 4\n")  # fmt: skip
        plan = load_plan(path)
        first = timed_pass(plan)
        rate = corpus_bytes / first[0]
        nothing = timed_pass(plan)
        busy = names[: max(1, round(len(names) * args.share))]
        new_bytes = sum(
            write_maildir(source, u, [message(u, 1000 + i, args.size) for i in range(args.new)], 1000)
            for u in busy
        )
        driver = WindowDriver(plan, StateStore(plan.state_db), WAVE, Actor("bench", socket.gethostname()),
                              Override(force=True, reason="benchmark"), lambda line: None)  # fmt: skip
        result = driver.run_to("switch")
        steps = {s.step: s for s in result.steps}
        final, switched = steps["final-pass"], steps["switched"]
        copy_time = new_bytes / rate
        print(
            f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared with other work)"
        )
        print(f"first pass: {len(names)} mailboxes, {len(names) * args.messages} messages, "
              f"{corpus_bytes / 1e6:.1f} MB ({first[1]} copied) in {first[0]:.1f} s ({rate / 1e6:.2f} MB/s)")  # fmt: skip
        print(f"delta pass, nothing new: {nothing[0]:.2f} s over {len(names)} mailboxes")
        print(f"final pass (delta, {len(busy)} mailboxes = {args.share:.0%} with {args.new} new each, "
              f"{final.did['copied']} copied, {new_bytes / 1e3:.0f} kB): {final.did['seconds']:.2f} s")  # fmt: skip
        print(f"  goal: under 10 s + the new mail's copy time (~{copy_time:.2f} s at the first pass's rate) "
              f"= {10 + copy_time:.2f} s: {'MET' if final.did['seconds'] < 10 + copy_time else 'MISSED'}")  # fmt: skip
        print(f"switch step: {switched.seconds:.2f} s ({switched.did.get('marks')})")
    finally:
        for server in (source, target):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def timed_pass(plan: Plan) -> tuple[float, int]:
    started = time.monotonic()
    result = run_wave(plan, WAVE)
    return time.monotonic() - started, int(result.stats.totals()["copied"])


if __name__ == "__main__":
    main()

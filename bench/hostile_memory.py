"""Peak memory of `cutover run` against each hostile source of lab/hostile.py (issue #16).

    python bench/hostile_memory.py [--code DIR] [--seconds 20] [--cap-mb 4096]

``--code`` runs another checkout's `cutover` (e.g. main before the limits) against the same servers;
each run is killed after ``--seconds`` and held to ``--cap-mb`` of address space, so a checkout
without the limits can be measured without exhausting the machine. Prints one JSON line per case:
the exit status (negative: killed by that signal), its peak RSS (wait4) and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.extend([str(REPO), str(REPO / "tests")])

from dovecot_lab import write_plan  # noqa: E402
from servers.dovecot import DovecotServer  # noqa: E402

from lab.hostile import hostile_server  # noqa: E402

CASES = (
    "login-literal-99999999999999999999",
    "login-literal-3000000000",
    "login-literal-999999999999",
    "body-literal-999999999999",
    "body-literal-3000000000",
    "meta-endless",
    "login-endless",
    "list-endless",
    "pop3-retr-endless",
)


class Side:
    def __init__(self, port: int) -> None:
        self.imap_port, self.master_user = port, "admin"


def measure(case: str, code: Path, target: DovecotServer, seconds: float, cap_mb: int) -> dict[str, object]:
    protocol = "pop3" if case.startswith("pop3-") else "imap"
    root = Path(tempfile.mkdtemp(prefix="hostilemem"))
    with hostile_server(case, protocol) as server:
        extra = 'login_template = "{user}*{master}"'
        plan = write_plan(root, Side(server.port), target, source_extra=extra)
        if protocol == "pop3":
            plan.write_text(plan.read_text().replace('type = "imap"', 'type = "pop3"', 1))
        env = dict(
            os.environ, PYTHONPATH=str(code), SRC_MASTER_PW="bench-pw", DST_MASTER_PW=target.master_password
        )

        def cap() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (cap_mb << 20, cap_mb << 20))

        started = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cockpit.cli",
                "run",
                "--plan",
                str(plan),
                "--wave",
                "pilot",
                "--output",
                "json",
            ],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=cap,
        )
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        while pid == 0 and time.monotonic() - started < seconds:
            time.sleep(0.05)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == 0:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code_ = os.waitstatus_to_exitcode(status)
    return {
        "case": case,
        "exit": code_,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=REPO)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cap-mb", type=int, default=4096)
    parser.add_argument("cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    target = DovecotServer()
    target.add_user("alice", "pw")
    target.start()
    try:
        for case in args.cases:
            print(json.dumps(measure(case, args.code, target, args.seconds, args.cap_mb)), flush=True)
    finally:
        target.stop()


if __name__ == "__main__":
    main()

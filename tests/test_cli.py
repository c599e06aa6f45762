"""The command line's own contract, through the real CLI in a subprocess: version and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import version
from pathlib import Path

from corpus import message
from dovecot_lab import CUTOVER, Unreachable, make_lab, write_plan
from servers import imapfill
from servers.dovecot import DovecotServer

BIG = message("big attachment", "A" * 76 + "\n" + ("B" * 76 + "\n") * 15_000)  # ~1.2 MB


def cutover(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CUTOVER, *args], capture_output=True, text=True, timeout=60, env=dict(os.environ), cwd=cwd
    )


def test_version() -> None:
    proc = cutover("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"cutover {version('cutover-cockpit')}"


def test_check_offers_only_the_categories_that_have_checks() -> None:
    listed = cutover("check", "--list")
    assert listed.returncode == 0, listed.stderr
    with_checks = {line.split()[1] for line in listed.stdout.splitlines() if line.strip()}
    usage = cutover("check", "--help").stdout
    offered = set(usage.split("--category {", 1)[1].split("}", 1)[0].split(","))
    assert offered == with_checks
    refused = cutover("check", "--list", "--category", "tagret")
    assert refused.returncode == 2 and "invalid choice: 'tagret'" in refused.stderr


def test_status_exits_1_while_something_needs_attention(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    lab = make_lab(
        tmp_path / "lab", source_dovecot, target_dovecot, target_extra="max_message_bytes = 1000000"
    )

    def status() -> int:
        codes = {
            lab.cutover("status", "--plan", str(lab.plan), *o).returncode for o in ((), ("--output", "json"))
        }
        assert len(codes) == 1, "text and JSON disagree"
        return codes.pop()

    assert status() == 0  # nothing started yet: nothing wrong
    imapfill.append(source_dovecot, "alice", "INBOX", message("small"))
    assert lab.run()[0] == 0
    assert status() == 0  # everything copied

    imapfill.append(source_dovecot, "alice", "INBOX", BIG)
    assert lab.run()[0] == 1
    assert status() == 1  # skipped: over the target's limit
    assert lab.cutover("status", "--plan", str(lab.plan), "--wave", "pilot").returncode == 1

    waived = lab.cutover(
        "skip",
        "--plan",
        str(lab.plan),
        "--mailbox",
        "alice",
        "--folder",
        "INBOX",
        "--uid",
        "2",
        "--reason",
        "r",
    )
    assert waived.returncode == 0, waived.stderr
    assert status() == 0  # the operator decided: no longer a problem

    env = {**lab.env, "SRC_MASTER_PW": "wrong"}
    assert lab.cutover("run", "--plan", str(lab.plan), "--wave", "pilot", env=env).returncode == 1
    assert status() == 1  # the mailbox failed as a whole (login refused)


def test_status_exits_2_when_it_cant_read_the_state(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, Unreachable(1), Unreachable(2), tail='[state]\ndir = "state"\n')
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_bytes(b"not a database, " * 100)
    for output in ("text", "json"):
        proc = cutover("status", "--plan", str(plan), "--output", output)
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
        said = json.loads(proc.stdout)["error"] if output == "json" else proc.stderr.strip()
        assert "state.db: file is not a database" in said and said.count("\n") == 0, said

    (tmp_path / "state" / "state.db").unlink()
    (tmp_path / "state").rmdir()
    (tmp_path / "state").write_text("a file where the state directory should be\n")
    proc = cutover("status", "--plan", str(plan))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("is not a directory: can't read the state"), proc.stderr


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`cutover check --list | head -1`: the pipe closes under the writer."""
    proc = subprocess.Popen(
        [*CUTOVER, "check", "--list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as head does once it has its lines (here before the first, so it can't race)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err

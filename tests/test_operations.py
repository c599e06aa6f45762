"""What an operator relies on around the copy: secrets, detaching, connection caps, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from corpus import message
from dovecot_lab import CUTOVER, Lab, append_many, make_lab, wait_for
from gate import Gate
from servers import imapfill
from servers.dovecot import DovecotServer

ROOT = Path(__file__).resolve().parents[1]


def test_passwords_never_reach_logs_state_or_output(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("secret test"))
    imapfill.create_folder(source_dovecot, "alice", "Locked")
    (source_dovecot.maildir("alice") / ".Locked").chmod(0)  # an error path too
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    outputs = [
        lab.cutover("run", "--plan", str(lab.plan), "--wave", "pilot"),
        lab.cutover("status", "--plan", str(lab.plan), "--failures", "--output", "json"),
        lab.cutover("verify", "--plan", str(lab.plan), "--wave", "pilot", "--deep"),
    ]
    (source_dovecot.maildir("alice") / ".Locked").chmod(0o700)
    bad = lab.cutover(
        "run", "--plan", str(lab.plan), "--wave", "pilot", env=lab.env | {"DST_MASTER_PW": "wrong-Pa55-zz9"}
    )
    secrets = [source_dovecot.master_password, target_dovecot.master_password, "wrong-Pa55-zz9"]
    texts = [p.stdout + p.stderr for p in [*outputs, bad]]
    state_dir = lab.root / ".cutover"
    texts += [f.read_bytes().decode("utf-8", "replace") for f in state_dir.rglob("*") if f.is_file()]
    db = sqlite3.connect(state_dir / "state.db")
    texts += [
        repr(row)
        for table in ("runs", "mailboxes", "folders", "messages", "events")
        for row in db.execute(f"SELECT * FROM {table}")
    ]
    assert any("AUTHENTICATIONFAILED" in t for t in texts)  # the failure itself is recorded...
    for secret in secrets:
        assert not any(secret in t for t in texts), "a password leaked"  # ...but no password


def test_detached_run_outlives_its_terminal_and_logs_in_the_state_dir(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, gate: Gate
) -> None:
    append_many(source_dovecot, "alice", "INBOX", [message(f"d {n}") for n in range(50)])
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)

    proc = lab.cutover(
        "run",
        "--plan",
        str(lab.plan),
        "--wave",
        "pilot",
        "--detach",
        "--output",
        "json",
        env=lab.env | gate.env("hold-after-append:1"),
    )

    assert proc.returncode == 0, proc.stderr
    started = json.loads(proc.stdout)
    # Its own session, so the hang-up of the launching terminal can't reach it (checked while the
    # runner holds at its first batch, so it is certainly still there).
    assert gate.wait_held() == "after-append"
    assert os.getsid(started["pid"]) == started["pid"] != os.getsid(0)
    gate.open()
    log = Path(started["log"])
    assert log.parent == lab.root / ".cutover" / "logs"
    wait_for(lambda: (runs := lab.status()["runs"]) and runs[0]["status"] != "running", 60, 0.2)
    assert lab.status()["runs"][0]["status"] == "ok"
    assert '"copied": 50' in log.read_text()


def test_connection_cap_per_server_is_respected(tmp_path: Path, dovecot_factory: object) -> None:
    users = {f"u{i}": f"p{i}" for i in range(4)}
    source = dovecot_factory(users=users)  # type: ignore[operator]
    target = dovecot_factory(users=users)  # type: ignore[operator]
    for user in users:
        append_many(source, user, "INBOX", [message(f"{user} {n}", "w" * 4000) for n in range(100)])
    lab = make_lab(
        tmp_path / "lab",
        source,
        target,
        mailboxes=tuple((u, u, "w") for u in users),
        source_extra="max_connections = 1",
    )

    code, _ = lab.run("w", "--workers", "4")

    assert code == 0
    # Dovecot's log: with a cap of one, each master session ends before the next one begins.
    open_sessions = peak = 0
    for line in source.log_text().splitlines():
        if "Master user logging in as" in line:
            open_sessions += 1
            peak = max(peak, open_sessions)
        elif re.search(r"imap\(u\d\).*Disconnected", line):
            open_sessions -= 1
    assert peak == 1


def test_exit_codes_and_help(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    lab: Lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    for command in ("run", "status", "verify"):
        shown = subprocess.run(
            [sys.executable, "-m", "cockpit.cli", command, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert shown.returncode == 0 and "--plan" in shown.stdout
    assert lab.cutover("run", "--plan", str(lab.plan), "--wave", "nosuchwave").returncode == 2
    broken = lab.root / "broken.toml"
    broken.write_text('[source]\ntype = "imap"\nhost = "127.0.0.1"\nport = "143"\n')
    proc = lab.cutover("status", "--plan", str(broken))
    assert proc.returncode == 2
    assert f"{broken}:4" in proc.stderr and "source.port" in proc.stderr


def test_engines_never_import_the_tui() -> None:
    # The import-linter contract in pyproject.toml: checks/ and runners/ never import textual or cockpit.
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Engines never import the TUI KEPT" in proc.stdout


def test_interrupt_stops_after_the_batch_and_a_rerun_finishes(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, gate: Gate
) -> None:
    append_many(source_dovecot, "alice", "INBOX", [message(f"i {n}", "v" * 20_000) for n in range(3000)])
    # One connection per side: the batches are counted in the order one connection sends them.
    tail = "[run]\nbatch_messages = 20\nconnections_per_mailbox = 1\n"
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot, tail=tail)
    proc = subprocess.Popen(
        [*CUTOVER, "run", "--plan", str(lab.plan), "--wave", "pilot", "--progress", "none"],
        env=lab.env | gate.env("hold-after-append:5"),
        cwd=lab.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupted while the target holds the fifth batch and the ledger doesn't know it yet.
    assert gate.wait_held(proc) == "after-append"
    proc.send_signal(signal.SIGINT)
    said = ""
    while "stopping after the current batch" not in said and (line := proc.stderr.readline()):
        said += line
    gate.open()
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, out + said + err
    assert "stopping after the current batch" in said
    status = lab.status()
    assert status["runs"][0]["status"] == "interrupted"
    assert status["mailboxes"][0]["copied"] == 100  # the fifth batch recorded, no sixth begun
    code, summary = lab.run()
    assert code == 0
    assert summary["totals"]["copied"] == 3000 - 100

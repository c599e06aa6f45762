"""A fleet in a test: many mailboxes on real Dovecots, ``cutover runner`` processes standing for hosts,
and waits for what the store shows (never for time)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from corpus import message
from dovecot_lab import CUTOVER, Lab, append_many
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.plan.loader import load_plan
from runners.state.open_store import open_store
from runners.state.store import StateStore

#: Long enough for a loaded machine; a failure says what was awaited.
WAIT_SECONDS = 180.0

T = TypeVar("T")


def users(count: int) -> dict[str, str]:
    return {f"u{n:02d}": f"pw{n:02d}" for n in range(count)}


def fill(source: DovecotServer, names: list[str], per_mailbox: int) -> int:
    """Each mailbox: INBOX and a second folder, with a byte-identical duplicate every tenth message."""
    total = 0
    for name in names:
        imapfill.create_folder(source, name, "Work")
        bodies = [message(f"{name} message {n}", "x" * (300 + 11 * n)) for n in range(per_mailbox)]
        bodies[9::10] = bodies[8::10][: len(bodies[9::10])]
        append_many(source, name, "INBOX", bodies[: per_mailbox * 2 // 3])
        append_many(source, name, "Work", bodies[per_mailbox * 2 // 3 :], flags=("\\Seen",))
        total += per_mailbox
    return total


def wait_for(what: str, probe: Callable[[], T | None], procs: tuple[subprocess.Popen[str], ...] = ()) -> T:
    """Until ``probe`` returns something; fails naming ``what`` after ``WAIT_SECONDS``, or at once when
    a process that must live through the wait ended."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = probe()
        if found:
            return found
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"waiting for {what}: {proc.args} ended with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT_SECONDS:g} s for {what}")
        time.sleep(0.1)  # a poll interval, not a wait for the machine: the deadline is what's awaited


class Fleet:
    """Runner processes on one lab's plan, and what the store says about them."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.plan = load_plan(lab.plan)
        self.runners: dict[str, subprocess.Popen[str]] = {}

    def store(self) -> StateStore:
        return open_store(self.plan, read_only=True)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        store = self.store()
        try:
            return store.query(sql, params)
        finally:
            store.close()

    def start_runner(
        self, name: str, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*CUTOVER, "runner", "--plan", str(self.lab.plan), "--name", name, "--output", "json", *extra],
            env=self.lab.env | (env or {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.lab.root,
        )
        self.runners[name] = proc
        return proc

    def launch(
        self, wave: str = "pilot", *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """``cutover run`` in the background: it starts the run (its queue) and works it too."""
        return subprocess.Popen(
            [*CUTOVER, "run", "--plan", str(self.lab.plan), "--wave", wave, "--output", "json", "--progress",
             "none", *extra],
            env=self.lab.env | (env or {}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.lab.root,
        )  # fmt: skip

    def held_by(self, name: str) -> list[str]:
        return [r["source"] for r in self.query("SELECT source FROM mailboxes WHERE owner = ?", (name,))]

    def copying(self, name: str) -> list[str]:
        """Mailboxes ``name`` holds that have messages copied this run already (it is mid-mailbox)."""
        rows = self.query(
            "SELECT source FROM mailboxes WHERE owner = ? AND messages_done > 0 AND state = 'running'",
            (name,),
        )
        return [r["source"] for r in rows]

    def run_done(self) -> bool:
        rows = self.query("SELECT status FROM runs ORDER BY id DESC LIMIT 1")
        return bool(rows) and rows[0]["status"] != "running"

    def stop_all(self) -> dict[str, subprocess.CompletedProcess[str]]:
        """SIGTERM to every runner still there: each finishes its batch and exits."""
        for proc in self.runners.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        done = {}
        for name, proc in self.runners.items():
            out, err = proc.communicate(timeout=WAIT_SECONDS)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        return done

    def kill_all(self) -> None:
        for proc in self.runners.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()


@contextmanager
def fleet_of(lab: Lab) -> Iterator[Fleet]:
    fleet = Fleet(lab)
    try:
        yield fleet
    finally:
        fleet.kill_all()


def writer_idle(db_path: Path) -> bool:
    """Can a write transaction start on the SQLite store now (nobody holds its write lock)?"""
    import sqlite3

    db = sqlite3.connect(db_path, timeout=0.05, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def freeze_between_transactions(proc: subprocess.Popen[str], db_path: Path | None) -> None:
    """SIGSTOP ``proc`` at a moment it holds no write transaction of the SQLite store (a process frozen
    inside one would freeze every writer of the file: SQLite has one write lock). A shared store
    (PostgreSQL) needs no such care: ``db_path`` None."""
    for _ in range(200):
        os.kill(proc.pid, signal.SIGSTOP)
        if db_path is None or writer_idle(db_path):
            return
        os.kill(proc.pid, signal.SIGCONT)
    raise AssertionError("the runner held the store's write lock every time it was frozen")

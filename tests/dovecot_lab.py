"""A migration lab for engine tests: a plan pointing at real Dovecot servers, and ``cutover`` runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from servers import imapfill
from servers.dovecot import DovecotServer

CUTOVER = [sys.executable, "-m", "cockpit.cli"]
#: alice and bob in the pilot wave, carol in a later one that no test runs: the cockpit's usual fleet.
PILOT_AND_LATER = (("alice", "alice", "pilot"), ("bob", "bob", "pilot"), ("carol", "carol", "full"))


class ImapSide(Protocol):
    """What a plan needs of a server: a ``DovecotServer``, or ``Unreachable`` when none is contacted."""

    @property
    def imap_port(self) -> int: ...

    @property
    def master_user(self) -> str: ...


def run_cutover(
    root: Path, args: tuple[str, ...], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess in ``root``, as an operator runs it (every lab's ``cutover``)."""
    return subprocess.run(
        [*CUTOVER, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=root
    )


class RunsCutover(Protocol):
    """A lab that runs the real CLI on its plan (``Lab``, ``EwsLab``, ``GraphLab``)."""

    plan: Path

    @property
    def env(self) -> dict[str, str]: ...

    def cutover(self, *args: str, env: dict[str, str] | None = None, timeout: float = ...) -> Any: ...


def run_killed(lab: RunsCutover, fault: str, wave: str = "pilot") -> None:
    """``cutover run`` killed with ``kill -9`` where ``CUTOVER_FAULT=kill-<fault>`` says (a point of
    ``runners.engine.faults``, ``:n`` its n-th time); fails the test unless it died there."""
    proc = lab.cutover(
        "run", "--plan", str(lab.plan), "--wave", wave, "--progress", "none",
        env=lab.env | {"CUTOVER_FAULT": f"kill-{fault}"},
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def json_answer(proc: subprocess.CompletedProcess[str], command: str) -> tuple[int, dict[str, Any]]:
    """A ``--output json`` run's exit status and JSON; no JSON fails the test with all it printed."""
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"no JSON from cutover {command} (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from None


@dataclass(frozen=True)
class Unreachable:
    """An IMAP side on a loopback port nothing listens on, for plans whose servers are never contacted."""

    imap_port: int
    master_user: str = "admin"


@dataclass
class Lab:
    source: DovecotServer
    target: DovecotServer
    root: Path
    plan: Path

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SRC_MASTER_PW"] = self.source.master_password
        env["DST_MASTER_PW"] = self.target.master_password
        return env

    def cutover(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a subprocess, as an operator would."""
        return run_cutover(self.root, args, env or self.env, timeout)

    def run(
        self, wave: str = "pilot", *extra: str, env: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """``cutover run --output json``: its exit status and summary (``env``: the lab's by default)."""
        proc = self.cutover(
            "run", "--plan", str(self.plan), "--wave", wave, "--output", "json", *extra, env=env
        )
        return json_answer(proc, "run")

    def verify(self, wave: str = "pilot", *extra: str) -> tuple[int, dict[str, Any]]:
        proc = self.cutover("verify", "--plan", str(self.plan), "--wave", wave, "--output", "json", *extra)
        return proc.returncode, json.loads(proc.stdout)

    def status(self, *extra: str) -> dict[str, Any]:
        proc = self.cutover("status", "--plan", str(self.plan), "--output", "json", *extra)
        assert proc.returncode in (0, 1), proc.stderr  # 1: something needs attention
        return json.loads(proc.stdout)


def write_plan(
    root: Path,
    source: ImapSide,
    target: ImapSide,
    *,
    mailboxes: tuple[tuple[str, str, str], ...] = (("alice", "alice", "pilot"),),
    source_extra: str = "",
    target_extra: str = "",
    tail: str = "",
    pilots: tuple[str, ...] | None = None,
) -> Path:
    """``plan.toml`` and ``mailboxes.csv`` in ``root``: master logins on both sides, passwords from
    ``SRC_MASTER_PW``/``DST_MASTER_PW``; ``*_extra`` go into ``[source]``/``[target]``, ``tail`` after.
    ``pilots``: declare every wave in ``[[waves]]`` (in the mailboxes' order), these marked as pilots."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mailboxes.csv").write_text(
        "source,target,wave\n" + "".join(f"{s},{t},{w}\n" for s, t, w in mailboxes), encoding="utf-8"
    )
    plan = root / "plan.toml"
    plan.write_text(
        f"""
[source]
type = "imap"
host = "127.0.0.1"
port = {source.imap_port}
security = "plain"
auth = "master"
master_user = "{source.master_user}"
master_password = "env:SRC_MASTER_PW"
{source_extra}

[target]
type = "imap"
host = "127.0.0.1"
port = {target.imap_port}
security = "plain"
auth = "master"
master_user = "{target.master_user}"
master_password = "env:DST_MASTER_PW"
{target_extra}

[mailboxes]
csv = "mailboxes.csv"

{tail}
{"" if pilots is None else waves_toml(tuple(dict.fromkeys(w for _, _, w in mailboxes)), pilots)}
""",
        encoding="utf-8",
    )
    return plan


def waves_toml(waves: tuple[str, ...], pilots: tuple[str, ...] = ()) -> str:
    """``[[waves]]`` tables declaring ``waves`` in this order, ``pilots`` among them marked as pilots."""
    return "".join(
        f'[[waves]]\nname = "{w}"\n' + ("pilot = true\n" if w in pilots else "") + "\n" for w in waves
    )


def make_lab(root: Path, source: DovecotServer, target: DovecotServer, **plan_options: Any) -> Lab:
    return Lab(source, target, root, write_plan(root, source, target, **plan_options))


def multiset(
    snapshot: dict[str, list[imapfill.Message]],
) -> dict[str, Counter[tuple[bytes, frozenset[str], float]]]:
    """Folder → multiset of (body, flags, INTERNALDATE as a timestamp)."""
    return {
        folder: Counter((body, flags, date.timestamp()) for body, flags, date in messages)
        for folder, messages in snapshot.items()
    }


def assert_same_mailbox(source: DovecotServer, target: DovecotServer, user: str = "alice") -> None:
    src = multiset(imapfill.folder_snapshot(source, user, master=True))
    dst = multiset(imapfill.folder_snapshot(target, user, master=True))
    assert sorted(src) == sorted(dst), "folder trees differ"
    for folder in src:
        missing = src[folder] - dst[folder]
        extra = dst[folder] - src[folder]
        assert not missing and not extra, (
            f"{folder}: {sum(missing.values())} missing, {sum(extra.values())} extra"
        )


def uidnexts(server: DovecotServer, user: str = "alice") -> dict[str, int]:
    """UIDNEXT of every folder: any APPEND, even one later expunged, moves it."""
    with imapfill.connect(server, user, master=True) as client:
        out = {}
        for attrs, _sep, name in client.list_folders():
            if any(a.lower() == b"\\noselect" for a in attrs):
                continue
            out[name] = client.folder_status(name, [b"UIDNEXT"])[b"UIDNEXT"]
        return out


def doveadm(server: DovecotServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Dovecot's admin tool against a private test instance."""
    assert server.root is not None
    return subprocess.run(
        ["doveadm", "-c", str(server.root / "dovecot.conf"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def append_many(
    server: DovecotServer, user: str, folder: str, bodies: list[bytes], flags: tuple[str, ...] = ()
) -> None:
    """Fill a folder quickly: one connection, MULTIAPPEND in chunks."""
    with imapfill.connect(server, user, master=True) as client:
        for start in range(0, len(bodies), 200):
            client.multiappend(
                folder, [{"msg": body, "flags": flags} for body in bodies[start : start + 200]]
            )


def rewrite_table(plan: Path, table: str, transform: Callable[[str], str]) -> None:
    """Rewrite one ``[table]`` of a plan file (up to the next table header) with ``transform``."""
    text = plan.read_text()
    start = text.index(f"[{table}]")
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end + 1
    plan.write_text(text[:start] + transform(text[start:end]) + text[end:])


def wait_for(predicate: Callable[[], object], seconds: float = 30, interval: float = 0.1) -> None:
    """Poll ``predicate`` until it is true; fail the test if it isn't within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not reached in time")

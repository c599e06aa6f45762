"""Runs of a wave in the state store: started, finished, and read back."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from runners.state.base import StoreBase
from runners.state.operators import operator_label
from runners.state.statuses import RunKind, RunStatus

if TYPE_CHECKING:
    from runners.state.listing_rows import RunSummary

_COLUMNS = "id, wave, kind, status, started, ended, pid, host, workers, controls_from"


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    wave: str
    kind: RunKind
    status: RunStatus
    started: float
    ended: float | None
    pid: int | None
    host: str | None
    workers: int | None
    #: The newest control request when the run started: the later ones apply to it, on every host
    #: (None: a run recorded before this was kept).
    controls_from: int | None = None


class RunsMixin(StoreBase):
    def start_run(self, wave: str, kind: str, workers: int) -> int:
        with self.transaction() as db:
            return self._backend.insert(
                db,
                "INSERT INTO runs (wave, kind, started, status, pid, host, workers, operator, controls_from) "
                "VALUES (?,?,?,?,?,?,?,?,(SELECT COALESCE(MAX(id), 0) FROM controls))",
                (
                    wave,
                    kind,
                    time.time(),
                    RunStatus.RUNNING,
                    os.getpid(),
                    socket.gethostname(),
                    workers,
                    operator_label(),
                ),
            )

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET ended = ?, status = ?, summary = ? WHERE id = ?",
                (time.time(), status, json.dumps(summary, sort_keys=True), run_id),
            )

    def mark_dead_runs(self) -> None:
        """Runs left 'running' by a process on this host that no longer exists were interrupted.

        A read-only store writes nothing: its reads already show such runs as interrupted."""
        if self.read_only:
            return
        for run in self._read(
            "SELECT id, pid FROM runs WHERE status = ? AND host = ?", (RunStatus.RUNNING, _host())
        ):
            if not alive(int(run[1])):
                with self.transaction() as db:
                    db.execute("UPDATE runs SET status = ? WHERE id = ?", (RunStatus.INTERRUPTED, run[0]))

    def close_orphaned_runs(self, lease_seconds: float) -> list[int]:
        """Runs whose launcher is gone, on any host, and whose mailboxes are all finished were
        interrupted: nobody is left to write their end. Returns their ids.

        A launcher is gone when its row in ``fleet_hosts`` (``host:pid``, its heartbeat) says it
        stopped or has not beaten for ``lease_seconds``: a process of another host can't be asked
        whether it exists. While the run has open mailboxes it stays running, so the fleet's runners
        finish them without the launcher; the runner that sees the last one done closes it. A
        launcher that was only frozen and comes back writes its own end over this one."""
        if self.read_only:
            return []
        stale = time.time() - lease_seconds
        rows = self._read(
            "SELECT r.id FROM runs r JOIN fleet_hosts f ON f.name = r.host || ':' || CAST(r.pid AS TEXT) "
            "WHERE r.status = ? AND (f.state = 'stopped' OR f.heartbeat < ?) AND NOT EXISTS "
            "(SELECT 1 FROM run_mailboxes q WHERE q.run_id = r.id AND q.done = 0) ORDER BY r.id",
            (RunStatus.RUNNING, stale),
        )
        closed = []
        for (run_id,) in rows:
            with self.transaction() as db:
                # Only a run still running: its launcher may have ended it since the read.
                changed = db.execute(
                    "UPDATE runs SET status = ? WHERE id = ? AND status = ?",
                    (RunStatus.INTERRUPTED, run_id, RunStatus.RUNNING),
                ).rowcount
            if changed:
                closed.append(int(run_id))
        return closed

    def run(self, run_id: int) -> RunRow | None:
        """One run by its id (None: no such run)."""
        rows = self._read(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def recent_runs(self, wave: str | None = None, limit: int = 10) -> list[RunRow]:
        """The last ``limit`` runs (of one wave, or of all), newest first."""
        where = "WHERE wave = ? " if wave else ""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM runs {where}ORDER BY id DESC LIMIT ?", (*([wave] if wave else []), limit)
        )
        return [_run(r) for r in rows]

    def running_runs(self, wave: str | None = None) -> list[RunRow]:
        """Runs still marked running by a live process (of one wave, or of all), oldest first."""
        where, params = ("AND wave = ? ", [wave]) if wave else ("", [])
        rows = self._read(
            f"SELECT {_COLUMNS} FROM runs WHERE status = ? {where}ORDER BY id", (RunStatus.RUNNING, *params)
        )
        return [run for run in map(_run, rows) if run.status == RunStatus.RUNNING]

    def last_finished_run(self, wave: str) -> RunRow | None:
        """The wave's newest run that is over (a run whose process died counts: it was interrupted)."""
        rows = self._read(f"SELECT {_COLUMNS} FROM runs WHERE wave = ? ORDER BY id DESC", (wave,))
        return next((run for run in map(_run, rows) if run.status != RunStatus.RUNNING), None)

    def has_finished_run(self, wave: str) -> bool:
        """Has the wave run before (then the next run is a delta pass)?"""
        return self.last_finished_run(wave) is not None

    def last_run_per_wave(self) -> dict[str, RunRow]:
        return {run.wave: run for run in map(_run, self._read(f"SELECT {_COLUMNS} FROM runs ORDER BY id"))}

    def finished_run_summaries(self) -> list[RunSummary]:
        """The totals of every finished run that stored some (unreadable ones are left out)."""
        from runners.state.listing_rows import RunSummary

        out = []
        for run_id, text in self._read(
            "SELECT id, summary FROM runs WHERE status != ? AND summary IS NOT NULL", (RunStatus.RUNNING,)
        ):
            try:
                summary = json.loads(text)
            except (TypeError, ValueError):
                continue
            if isinstance(summary, dict):
                out.append(RunSummary(int(run_id), summary))
        return out


def _run(row: tuple[Any, ...]) -> RunRow:
    run = RunRow(row[0], row[1], RunKind(row[2]), RunStatus(row[3]), *row[4:])
    if run.status == RunStatus.RUNNING and run.host == _host() and run.pid and not alive(run.pid):
        # Killed (-9, a crash): what mark_dead_runs records, shown as such even by a read-only store.
        return replace(run, status=RunStatus.INTERRUPTED)
    return run


def _host() -> str:
    return socket.gethostname()


def alive(pid: int) -> bool:
    """Does a process with this id exist on this host?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The cutover window in the state store: each step a wave took (ready, final pass, switched, and the
switch's sub-steps), the lease that keeps two operators from moving one wave at once, and the audit
trail that gathers every operator action the store keeps (steps, launches, controls, waivers, the
cockpit's actions).

A step is a row: started, then done, refused or failed, with what it checked and what it did as JSON
(the window's code makes them; never a secret) and who: the OS user, the host and the SSH client.
The rows are built in ``wave_step_rows``, imported where they are made: a run doesn't build them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runners.safe_text import safe_data
from runners.state.audit import OPERATOR
from runners.state.base import StoreBase
from runners.state.errors import StoreError
from runners.state.runs import alive
from runners.state.statuses import StepStatus

if TYPE_CHECKING:
    from runners.state.wave_step_rows import Actor, AuditEntry, LeaseRow, StepRow, WaveStanding

#: The window's main steps (the stage a wave is at is the last one done); ``switch:…`` rows are sub-steps.
MAIN_STEPS = ("ready", "final-pass", "switched", "settled", "closed", "rolled-back")


class WaveStepsMixin(StoreBase):
    # -- steps ---------------------------------------------------------------------------------

    def begin_step(self, wave: str, step: str, actor: Actor, params: dict[str, Any]) -> int:
        """A step begins: its row, status started; returns its id."""
        with self.transaction() as db:
            return self._backend.insert(
                db,
                "INSERT INTO wave_steps (wave, step, status, started, operator, host, ssh_client, params) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (wave, step, StepStatus.STARTED, time.time(), actor.user, actor.host, actor.ssh_client,
                 _json(params)),
            )  # fmt: skip

    def end_step(
        self,
        step_id: int,
        status: StepStatus,
        *,
        checked: list[Any] | None = None,
        did: dict[str, Any] | None = None,
    ) -> None:
        """The step's outcome, with what it checked and did."""
        with self.transaction() as db:
            db.execute(
                "UPDATE wave_steps SET status = ?, ended = ?, checked = ?, did = ? WHERE id = ?",
                (StepStatus(status), time.time(), _json(checked or []), _json(did or {}), step_id),
            )

    def set_step_params(self, step_id: int, params: dict[str, Any]) -> None:
        """Replace a started step's parameters (once what it checked decides them)."""
        with self.transaction() as db:
            db.execute("UPDATE wave_steps SET params = ? WHERE id = ?", (_json(params), step_id))

    def wave_steps(self, wave: str | None = None) -> list[StepRow]:
        """Every step (of one wave, or of all), oldest first."""
        from runners.state.wave_step_rows import Actor, StepRow

        where, params = ("WHERE wave = ? ", (wave,)) if wave else ("", ())
        rows = self._read(
            "SELECT id, wave, step, status, started, ended, operator, host, ssh_client, params, checked, did "
            f"FROM wave_steps {where}ORDER BY id",
            params,
        )
        return [
            StepRow(r[0], r[1], r[2], StepStatus(r[3]), r[4], r[5], Actor(r[6], r[7], r[8]),
                    json.loads(r[9]), json.loads(r[10]), json.loads(r[11]))
            for r in rows
        ]  # fmt: skip

    def steps_done(self, wave: str) -> list[str]:
        """The steps of ``wave`` that completed, in the order they did (sub-steps included)."""
        rows = self._read(
            "SELECT step FROM wave_steps WHERE wave = ? AND status = ? ORDER BY id", (wave, StepStatus.DONE)
        )
        return [r[0] for r in rows]

    def last_pass_seconds(self, wave: str, kind: str) -> float | None:
        """How long the wave's newest finished pass of ``kind`` took (its summary's seconds)."""
        rows = self._read(
            "SELECT summary FROM runs WHERE wave = ? AND kind = ? AND status != 'running' AND summary IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (wave, kind),
        )
        if not rows:
            return None
        seconds = json.loads(rows[0][0]).get("seconds")
        return float(seconds) if isinstance(seconds, int | float) else None

    def wave_switched(self, wave: str) -> bool:
        """Whether the wave's users are served by the target: switched (or beyond), not rolled back."""
        rows = self._read(
            "SELECT step FROM wave_steps WHERE wave = ? AND status = ? AND step IN "
            "('switched', 'settled', 'closed', 'rolled-back') ORDER BY id DESC LIMIT 1",
            (wave, StepStatus.DONE),
        )
        return bool(rows) and rows[0][0] != "rolled-back"

    def wave_standings(self, waves: Sequence[str]) -> list[WaveStanding]:
        """Each of ``waves``, in that order, with its stage (a store from before the window has none
        recorded: every wave is copying)."""
        from runners.state.wave_step_rows import WaveStanding

        steps = self.wave_steps() if self._backend.columns("wave_steps") else []
        out = []
        for wave in waves:
            mine = [s for s in steps if s.wave == wave]
            done = [s for s in mine if s.status == StepStatus.DONE and s.step in MAIN_STEPS]
            last = done[-1] if done else None
            problem = next((s for s in reversed(mine) if (last is None or s.id > last.id)
                            and s.status in (StepStatus.REFUSED, StepStatus.FAILED)), None)  # fmt: skip
            out.append(WaveStanding(wave, last.step if last else "copying", last.ended if last else None,
                                    str(last.actor) if last else None,
                                    f"{problem.step}: {problem.status}" if problem else None))  # fmt: skip
        return out

    # -- the lease -----------------------------------------------------------------------------

    def take_wave_lease(self, wave: str, holder: str, seconds: float) -> LeaseRow | None:
        """Hold ``wave`` for this process for ``seconds``. None when taken (or renewed), else the
        lease of the live operator who holds it. A lease whose process is gone (on this host) or
        that expired is taken over."""
        from runners.state.wave_step_rows import LeaseRow

        now, host, pid = time.time(), socket.gethostname(), os.getpid()
        with self.transaction() as db:
            row = db.execute(
                "SELECT wave, holder, host, pid, taken, expires FROM wave_leases WHERE wave = ?", (wave,)
            ).fetchone()
            if row is not None:
                lease = LeaseRow(*row)
                mine = lease.host == host and lease.pid == pid
                if not mine and not _lease_dead(lease, now):
                    return lease
            db.execute(
                "INSERT INTO wave_leases (wave, holder, host, pid, taken, expires) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (wave) DO UPDATE SET holder = excluded.holder, host = excluded.host, "
                "pid = excluded.pid, taken = excluded.taken, expires = excluded.expires",
                (wave, holder, host, pid, now, now + seconds),
            )
        return None

    def release_wave_lease(self, wave: str) -> None:
        """Give the wave back (only this process's own lease)."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM wave_leases WHERE wave = ? AND host = ? AND pid = ?",
                (wave, socket.gethostname(), os.getpid()),
            )

    def wave_lease(self, wave: str) -> LeaseRow | None:
        from runners.state.wave_step_rows import LeaseRow

        rows = self._read(
            "SELECT wave, holder, host, pid, taken, expires FROM wave_leases WHERE wave = ?", (wave,)
        )
        return LeaseRow(*rows[0]) if rows else None

    # -- the audit trail -----------------------------------------------------------------------

    def audit_trail(self, wave: str | None = None) -> list[AuditEntry]:
        """Every operator action the store keeps, oldest first: the window's steps, runs launched,
        pause/resume/cancel requests, waived messages and the cockpit's recorded actions."""
        entries = [*self._audit_steps(wave), *self._audit_runs(wave), *self._audit_controls(wave)]
        entries += self._audit_waivers(wave) + self._audit_cockpit(wave)
        return sorted(entries, key=lambda e: e.at)

    def _audit_steps(self, wave: str | None) -> list[AuditEntry]:
        from runners.state.wave_step_rows import AuditEntry

        out = []
        for s in self.wave_steps(wave):
            if s.status == StepStatus.STARTED and s.ended is None and s.step.startswith("switch:"):
                continue  # a sub-step in flight says nothing yet
            detail = s.status.value
            if s.params.get("reason"):
                detail += f" (reason: {s.params['reason']})"
            out.append(AuditEntry(s.started, str(s.actor), s.step, s.wave, None, detail, s.params))
        return out

    def _audit_runs(self, wave: str | None) -> list[AuditEntry]:
        from runners.state.wave_step_rows import AuditEntry

        where, params = ("WHERE wave = ? ", (wave,)) if wave else ("", ())
        try:
            rows = self._read(
                f"SELECT id, wave, kind, started, host, pid, operator FROM runs {where}ORDER BY id", params
            )
        except StoreError as exc:  # a store from before runs named their operator, opened read-only
            if "no such column" not in str(exc):
                raise
            rows = [
                (*r, None)
                for r in self._read(
                    f"SELECT id, wave, kind, started, host, pid FROM runs {where}ORDER BY id", params
                )
            ]
        return [
            AuditEntry(r[3], r[6] or f"pid {r[5]}@{r[4]}", "launch", r[1], None, f"run {r[0]} ({r[2]} pass)",
                       {"run": r[0], "kind": r[2], "pid": r[5]})
            for r in rows
        ]  # fmt: skip

    def _audit_controls(self, wave: str | None) -> list[AuditEntry]:
        from runners.state.wave_step_rows import AuditEntry

        where, params = ("WHERE wave = ? OR wave IS NULL ", (wave,)) if wave else ("", ())
        rows = self._read(
            f"SELECT ts, wave, mailbox, action, requested_by FROM controls {where}ORDER BY id", params
        )
        return [
            AuditEntry(r[0], r[4] or "?", r[3], r[1], r[2], f"{r[3]} requested",
                       {"wave": r[1], "mailbox": r[2]})
            for r in rows
        ]  # fmt: skip

    def _audit_waivers(self, wave: str | None) -> list[AuditEntry]:
        from runners.state.wave_step_rows import AuditEntry

        clause, params = ("AND mb.wave = ? ", (wave,)) if wave else ("", ())
        rows = self._read(
            "SELECT a.at, mb.wave, mb.source, f.source_path, m.src_uid, a.reason FROM message_attempts a "
            "JOIN folders f ON f.id = a.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id "
            "LEFT JOIN messages m ON m.folder_id = a.folder_id AND m.uidvalidity = a.uidvalidity "
            f"AND m.src_key = a.src_key WHERE a.status = 'waived' {clause}ORDER BY a.at",
            params,
        )
        out = []
        for at, wave_name, source, folder, uid, reason in rows:
            text = reason or ""
            who = text.partition("decided by ")[2].partition(":")[0] or "?"
            out.append(AuditEntry(at, who, "waive", wave_name, source, f"{folder} UID {uid}: {text}",
                                  {"folder": folder, "uid": uid}))  # fmt: skip
        return out

    def _audit_cockpit(self, wave: str | None) -> list[AuditEntry]:
        from runners.state.wave_step_rows import AuditEntry

        rows = self._read(
            "SELECT e.ts, e.mailbox, e.message, mb.wave FROM events e LEFT JOIN mailboxes mb ON mb.source = e.mailbox "
            "WHERE e.kind = ? ORDER BY e.id",
            (OPERATOR,),
        )
        out = []
        for at, mailbox, message, mailbox_wave in rows:
            who, _, what = str(message).partition(": ")
            # A wave's own actions name it ("launch of wave pilot"); a mailbox's belong to its wave.
            if wave and mailbox_wave != wave and f"wave {wave}" not in what:
                continue
            out.append(
                AuditEntry(at, who, what.split(" ")[0] if what else "action", mailbox_wave, mailbox, what, {})
            )
        return out

    # -- the routing proxy's change marker -----------------------------------------------------

    def switch_marker(self) -> tuple[int, int]:
        """Changes whenever a wave's switched, settled, closed or rolled-back step completes: the
        routing proxy polls it (one indexed aggregate) and re-reads who is switched only then."""
        rows = self._read(
            "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM wave_steps WHERE status = ? AND step IN "
            "('switched', 'settled', 'closed', 'rolled-back')",
            (StepStatus.DONE,),
        )
        return int(rows[0][0]), int(rows[0][1])


def _json(value: Any) -> str:
    return json.dumps(safe_data(value), sort_keys=True, default=str)


def _lease_dead(lease: LeaseRow, now: float) -> bool:
    if lease.expires <= now:
        return True
    return lease.host == socket.gethostname() and not alive(lease.pid)

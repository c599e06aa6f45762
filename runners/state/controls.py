"""Control requests in the state store: pause, resume or cancel, asked by the cockpit or `cutover
control`, read by the runner's watcher (``runners.engine.control``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from runners.state.base import StoreBase
from runners.state.statuses import ControlAction


@dataclass(frozen=True, slots=True)
class ControlRow:
    id: int
    wave: str | None  # None: every wave
    mailbox: str | None  # None: the whole wave
    action: ControlAction


class ControlsMixin(StoreBase):
    def request_control(
        self, action: ControlAction, *, wave: str | None, mailbox: str | None, requested_by: str | None
    ) -> int:
        """Record a request; returns its id."""
        with self.transaction() as db:
            return self._backend.insert(
                db,
                "INSERT INTO controls (ts, wave, mailbox, action, requested_by) VALUES (?,?,?,?,?)",
                (time.time(), wave, mailbox, ControlAction(action), requested_by),
            )

    def last_control_id(self) -> int:
        """The newest request's id (0 when there is none): later ones are what a new run obeys."""
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM controls")[0][0])

    def controls_after(self, control_id: int) -> list[ControlRow]:
        """Requests newer than ``control_id``, oldest first."""
        rows = self._read(
            "SELECT id, wave, mailbox, action FROM controls WHERE id > ? ORDER BY id", (control_id,)
        )
        return [ControlRow(int(r[0]), r[1], r[2], ControlAction(r[3])) for r in rows]

    def mark_controls_seen(self, up_to: int) -> None:
        """A runner acted on every request up to this id."""
        with self.transaction() as db:
            db.execute("UPDATE controls SET seen = ? WHERE id <= ? AND seen IS NULL", (time.time(), up_to))

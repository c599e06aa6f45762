"""Operators' actions from a cockpit (launch, pause, resume, cancel, retry, skip, re-run of checks),
kept as events so that every cockpit's log view shows who did what, and when."""

from __future__ import annotations

import time

from runners.state.base import StoreBase

#: The event kind of an operator's action (the runner's own events have other kinds).
OPERATOR = "operator"


class AuditMixin(StoreBase):
    def record_operator_action(
        self, operator: str, what: str, *, mailbox: str | None = None, level: str = "info"
    ) -> None:
        """Keep ``operator`` (``user@host``) did ``what`` (one line, no secrets) as an event of no run."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO events (ts, run_id, mailbox, folder, level, kind, message) VALUES (?,?,?,?,?,?,?)",
                (time.time(), None, mailbox, None, level, OPERATOR, f"{operator}: {what}"),
            )

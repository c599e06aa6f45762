"""Pacing in the state store: how each throttled scope of a running wave stands (back-off, budget
used), so that ``cutover status`` and every cockpit see it while it lasts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from runners.safe_text import safe_or_none
from runners.state.base import StoreBase
from runners.state.errors import StoreError
from runners.state.statuses import RunStatus

_COLUMNS = (
    "run_id, scope, in_flight, concurrency, backoff_until, backoff_reason, back_offs, requests_in_window, "
    "request_budget, bytes_in_window, byte_budget, waited_seconds, updated"
)
#: Every column but the key, from the row offered (an upsert that replaces the whole row).
_REPLACED = ", ".join(f"{c} = excluded.{c}" for c in (c.strip() for c in _COLUMNS.split(",")[2:]))


@dataclass(frozen=True, slots=True)
class PacingRow:
    run_id: int
    scope: str
    in_flight: int
    concurrency: int | None
    #: Epoch seconds the back-off ends; None when none was in force at ``updated``.
    backoff_until: float | None
    backoff_reason: str | None
    back_offs: int
    requests_in_window: int
    request_budget: int | None
    bytes_in_window: int
    byte_budget: int | None
    waited_seconds: float
    updated: float

    def backoff_left(self, now: float | None = None) -> float:
        """Seconds of the back-off still to wait (0 when none is in force)."""
        if self.backoff_until is None:
            return 0.0
        return max(0.0, self.backoff_until - (time.time() if now is None else now))


class PacingMixin(StoreBase):
    def record_pacing(self, rows: Sequence[PacingRow]) -> None:
        """Replace what is known of these scopes for their runs."""
        if not rows:
            return
        with self.transaction() as db:
            db.executemany(
                f"INSERT INTO pacing ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                f"ON CONFLICT (run_id, scope) DO UPDATE SET {_REPLACED}",
                [
                    (
                        r.run_id,
                        r.scope,
                        r.in_flight,
                        r.concurrency,
                        r.backoff_until,
                        safe_or_none(r.backoff_reason),
                        r.back_offs,
                        r.requests_in_window,
                        r.request_budget,
                        r.bytes_in_window,
                        r.byte_budget,
                        r.waited_seconds,
                        r.updated,
                    )
                    for r in rows
                ],
            )

    def running_pacing(self, wave: str | None = None) -> list[PacingRow]:
        """The scopes of the runs still running (of ``wave``), most throttled first."""
        sql = (
            f"SELECT {', '.join('p.' + c.strip() for c in _COLUMNS.split(','))} FROM pacing p "
            "JOIN runs r ON r.id = p.run_id WHERE r.status = ?"
        )
        params: list[object] = [RunStatus.RUNNING]
        if wave is not None:
            sql += " AND r.wave = ?"
            params.append(wave)
        try:
            found = self._read(sql + " ORDER BY p.backoff_until DESC NULLS LAST, p.scope", params)
        except StoreError as exc:
            if "no such table: pacing" in str(exc):  # a store made before pacing, opened read-only
                return []
            raise
        return [PacingRow(*row) for row in found]

"""Writes how the run's throttled scopes stand (``runners.pacing``) to the state store every few
seconds, so that ``cutover status`` and the cockpit show back-offs and budget use while they last.

A background thread with its own store connection; a target that paces nothing (IMAP) leaves the
registry empty and nothing is written.
"""

from __future__ import annotations

import threading
import time

from runners.pacing import PaceSnapshot, pace_snapshots
from runners.state.pacing import PacingRow
from runners.state.store import StateStore

#: Often enough that a back-off of a few seconds is seen; rare enough to cost nothing.
WRITE_SECONDS = 2.0


def pacing_rows(run_id: int, snapshots: list[PaceSnapshot], now: float) -> list[PacingRow]:
    return [
        PacingRow(
            run_id=run_id,
            scope=s.scope,
            in_flight=s.in_flight,
            concurrency=s.concurrency,
            backoff_until=now + s.backoff_seconds if s.backoff_seconds > 0 else None,
            backoff_reason=s.backoff_reason,
            back_offs=s.back_offs,
            requests_in_window=s.requests_in_window,
            request_budget=s.request_budget,
            bytes_in_window=s.bytes_in_window,
            byte_budget=s.byte_budget,
            waited_seconds=round(s.waited_seconds, 3),
            updated=now,
        )
        for s in snapshots
    ]


class PacingRecorder:
    def __init__(self, store: StateStore, run_id: int, every: float = WRITE_SECONDS) -> None:
        self._store = store  # written from its own thread, on a connection of its own
        self._run_id = run_id
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pacing", daemon=True)
        self._last: list[PacingRow] = []

    def start(self) -> PacingRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        store = self._store
        try:
            while not self._stop.wait(self._every):
                self.write(store)
            self.write(store)  # the run's last word: the totals of the whole pass
        finally:
            store.close_thread()

    def write(self, store: StateStore) -> None:
        rows = pacing_rows(self._run_id, pace_snapshots(), time.time())
        changed = [r for r in rows if _changed(r, self._last)]
        if changed:
            store.record_pacing(changed)
        self._last = rows


def _changed(row: PacingRow, before: list[PacingRow]) -> bool:
    """Worth a write: anything but the clock moved (a quiet scope is not rewritten every tick)."""
    old = next((r for r in before if r.scope == row.scope), None)
    if old is None:
        return True
    fields = ("in_flight", "back_offs", "requests_in_window", "bytes_in_window", "waited_seconds")
    return any(getattr(old, f) != getattr(row, f) for f in fields) or (
        (old.backoff_until is None) != (row.backoff_until is None)
    )

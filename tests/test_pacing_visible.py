"""A back-off the service imposed is visible while it lasts: the runner's recorder writes each paced
scope to the store, `cutover status` (text and JSON) and the cockpit's overview read it back, and
only for runs still running."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from cockpit.screens.overview import pacing_now
from runners.engine.pacing_recorder import PacingRecorder
from runners.pacing import Budget, pace_for
from runners.state.read_models.status import pacing_line
from runners.state.statuses import RunStatus
from runners.state.store import StateStore


def test_a_back_off_reaches_the_store_status_and_cockpit(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    run_id = store.start_run("pilot", "full", 2)
    pace = pace_for("graph:visible@example.test", Budget(concurrency=4, requests=(10_000, 600.0)))
    with pace.slot():
        pass
    pace.back_off(30, "429 Too Many Requests: Retry-After: 30 (ApplicationThrottled)")
    PacingRecorder(store, run_id).write(store)

    reader = StateStore(path, read_only=True)
    rows = [r for r in reader.running_pacing("pilot") if r.scope == "graph:visible@example.test"]
    assert len(rows) == 1
    row = rows[0]
    assert row.back_offs == 1 and row.requests_in_window == 1 and row.request_budget == 10_000
    assert 25 < row.backoff_left() <= 30
    assert "ApplicationThrottled" in (row.backoff_reason or "")

    line = pacing_line(asdict(row) | {"backoff_seconds": row.backoff_left()})
    assert line.startswith("pacing graph:visible@example.test: waiting 3")
    assert "Retry-After: 30" in line and "requests 1/10000 per window" in line and "in flight 0/4" in line
    shown = pacing_now(rows)
    assert shown.startswith("THROTTLED: 1 of 1 paced scope(s) waiting") and "Retry-After: 30" in shown

    store.finish_run(run_id, RunStatus.OK, {})
    assert [r for r in reader.running_pacing("pilot") if r.scope == row.scope] == []  # over: not shown
    reader.close()
    store.close()


def test_nothing_paced_shows_nothing() -> None:
    assert pacing_now(()) == ""

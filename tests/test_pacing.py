"""The pacer keeps every worker of a scope inside the service's budget: concurrency, request and
byte windows, and a back-off the server asked for holds everyone, not only the one told.
(Lower bounds only: a slow machine may take longer, never less.)"""

from __future__ import annotations

import threading
import time

import pytest

from runners.pacing import Budget, Pace, pace_for, pace_snapshots


def run_threads(count: int, work: object) -> None:
    threads = [threading.Thread(target=work) for _ in range(count)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)


def test_concurrency_never_exceeds_the_cap() -> None:
    pace = Pace("test:concurrency", Budget(concurrency=3))
    lock = threading.Lock()
    in_flight = peak = 0

    def work() -> None:
        nonlocal in_flight, peak
        for _ in range(5):
            with pace.slot():
                with lock:
                    in_flight += 1
                    peak = max(peak, in_flight)
                time.sleep(0.002)
                with lock:
                    in_flight -= 1

    run_threads(10, work)
    assert peak == 3
    assert pace.snapshot().in_flight == 0


def test_a_request_window_spreads_requests_over_time() -> None:
    pace = Pace("test:window", Budget(requests=(4, 0.4)))
    stamps: list[float] = []
    start = time.monotonic()
    for _ in range(9):
        with pace.slot():
            stamps.append(time.monotonic() - start)
    # 4 now, 4 after one window, 1 after two: never more than 4 in any 0.4 s.
    assert stamps[4] >= 0.39 and stamps[8] >= 0.79
    for i in range(4, 9):
        assert stamps[i] - stamps[i - 4] >= 0.39


def test_a_byte_window_holds_uploads() -> None:
    pace = Pace("test:bytes", Budget(upload_bytes=(1000, 0.3)))
    start = time.monotonic()
    with pace.slot(600):
        pass
    with pace.slot(600):  # 1,200 bytes don't fit one window
        waited = time.monotonic() - start
    assert waited >= 0.29
    assert pace.snapshot().bytes_in_window == 600  # the first upload has left the window


def test_a_back_off_holds_every_worker_and_is_never_shortened() -> None:
    pace = Pace("test:backoff", Budget(concurrency=4))
    pace.back_off(0.5, "ErrorServerBusy: BackOffMilliseconds=500")
    pace.back_off(0.1, "a shorter one")
    snap = pace.snapshot()
    assert snap.backoff_reason == "ErrorServerBusy: BackOffMilliseconds=500"
    assert snap.back_offs == 2 and snap.backoff_seconds > 0.3
    entered: list[float] = []
    start = time.monotonic()

    def work() -> None:
        with pace.slot():
            entered.append(time.monotonic() - start)

    run_threads(4, work)
    assert len(entered) == 4 and min(entered) >= 0.45
    assert pace.snapshot().backoff_reason is None  # over: not shown any more


def test_jitter_without_a_wait_stays_within_its_bounds() -> None:
    pace = Pace("test:jitter", Budget())
    chosen = [pace.back_off_jittered(attempt, "MailboxConcurrency") for attempt in range(12)]
    assert all(0.5 <= s <= 60.0 for s in chosen)
    assert max(chosen[:1]) <= 1.0


def test_one_pace_per_scope_in_the_process() -> None:
    a = pace_for("test:shared", Budget(concurrency=2))
    b = pace_for("test:shared", Budget(concurrency=99))
    assert a is b and b.budget.concurrency == 2
    assert "test:shared" in {s.scope for s in pace_snapshots()}


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pace("test:bad", Budget(requests=(0, 10.0)))

"""A Graph mailbox's budget counts each request until a window after its answer: the service counts
it when it arrives, somewhere between our send and its answer (a $batch's requests each when it
runs), so what our windows let go is never closer together for the service, however long the
answer takes."""

from __future__ import annotations

from runners.connectors.graph_pace import graph_budget
from runners.pacing import Pace
from runners.plan.graph_options import GraphOptions
from runners.plan.model import Secret


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def options() -> GraphOptions:
    return GraphOptions(tenant_id="t", client_id="c", client_secret=Secret("s"), pace_requests=2,
                        pace_request_window=10.0, pace_upload_bytes=1000, pace_upload_window=10.0)  # fmt: skip


def test_a_request_is_counted_until_a_window_after_its_answer() -> None:
    clock = Clock()
    pace = Pace("test:graph-answer", graph_budget(options()), clock=clock)
    with pace.slot(400):
        clock.now += 3.0  # the answer takes 3 s: counted all the while
        assert pace.snapshot().requests_in_window == 1
        assert pace.snapshot().bytes_in_window == 400
    with pace.slot(400):
        pass
    clock.now = 100.0 + 10.5  # a window after both left, not yet after the answers (at 103)
    assert pace.snapshot().requests_in_window == 2
    assert pace.snapshot().bytes_in_window == 800
    clock.now = 103.0 + 10.0
    assert pace.snapshot().requests_in_window == 0
    assert pace.snapshot().bytes_in_window == 0


def test_room_and_ready_in_say_what_the_windows_take_now_and_when() -> None:
    clock = Clock()
    pace = Pace("test:graph-room", graph_budget(options()), clock=clock)
    assert pace.room() == (2, 1000)
    with pace.slot(700):
        assert pace.room() == (1, 300)  # counted from when it leaves
        clock.now += 2.0
    assert pace.room() == (1, 300)
    assert pace.ready_in(300) == 0.0
    assert pace.ready_in(301) == 10.0  # a window after its answer (at 102)
    assert pace.ready_in(0, requests=2) == 10.0
    clock.now = 112.0
    assert pace.room() == (2, 1000) and pace.ready_in(1000, requests=2) == 0.0

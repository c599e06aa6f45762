"""Deadlines kept by one timer (``runners.proxy.deadlines``): a task past its deadline is cancelled and
told it was the deadline; a task done in time, or cancelled by someone else, is not mistaken for one."""

from __future__ import annotations

import asyncio

import pytest

from runners.plan.proxy_model import LimitsOption
from runners.proxy.deadlines import Deadlines, SessionDeadlines


async def wait_in(deadlines: Deadlines, seen: list[str]) -> None:
    task = asyncio.current_task()
    assert task is not None
    deadlines.start(task)
    try:
        await asyncio.Event().wait()  # forever, unless cancelled
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            seen.append("cancelled")
            raise
        seen.append("expired")
    finally:
        deadlines.stop(task)
    await asyncio.sleep(0)  # taken back: the task goes on awaiting as usual
    seen.append("went on")


def test_tasks_past_their_deadline_are_cancelled_in_the_order_they_started() -> None:
    async def main() -> None:
        deadlines = Deadlines(0.05)
        seen: list[list[str]] = [[], [], []]
        tasks = [asyncio.create_task(wait_in(deadlines, s)) for s in seen]
        await asyncio.gather(*tasks)
        assert seen == [["expired", "went on"]] * 3
        assert not any(t.cancelled() for t in tasks)

    asyncio.run(main())


def test_a_task_done_in_time_is_not_cancelled_later() -> None:
    async def main() -> None:
        deadlines = Deadlines(0.02)
        task = asyncio.current_task()
        assert task is not None
        deadlines.start(task)
        deadlines.stop(task)
        await asyncio.sleep(0.1)  # several ticks past the deadline it no longer has
        assert task.cancelling() == 0
        assert not deadlines.expired(task)

    asyncio.run(main())


def test_a_cancellation_that_is_not_the_deadlines_goes_on() -> None:
    async def main() -> None:
        deadlines = Deadlines(60.0)
        seen: list[str] = []
        task = asyncio.create_task(wait_in(deadlines, seen))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        assert seen == ["cancelled"]

    asyncio.run(main())


def test_started_again_the_deadline_counts_from_then() -> None:
    async def main() -> None:
        deadlines = Deadlines(0.2)
        seen: list[str] = []
        task = asyncio.create_task(wait_in(deadlines, seen))
        await asyncio.sleep(0)
        restarted = asyncio.get_running_loop().time()
        deadlines.start(task)  # the same task, its deadline moved on
        await task
        assert seen == ["expired", "went on"]
        assert asyncio.get_running_loop().time() - restarted >= 0.2

    asyncio.run(main())


def _session_deadlines(connect: float, login: float) -> SessionDeadlines:
    return SessionDeadlines(LimitsOption(backend_connect_seconds=connect, backend_login_seconds=login))


def test_a_backend_that_greets_then_never_answers_the_login_times_out_on_the_login_deadline() -> None:
    async def main() -> None:
        deadlines = _session_deadlines(connect=0.05, login=0.2)
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        async def greets_then_hangs() -> None:
            await asyncio.sleep(0.01)
            deadlines.backend_greeted(task)  # the connection's deadline stops, the login's starts
            await asyncio.Event().wait()

        began = loop.time()
        with pytest.raises(TimeoutError):
            await deadlines.within_backend(task, greets_then_hangs())
        assert loop.time() - began >= 0.2  # the login's deadline, not the connection's
        assert task.cancelling() == 0  # taken back: the session goes on to answer its client
        await asyncio.sleep(0.3)  # nothing of either deadline is left to cancel it later

    asyncio.run(main())


def test_a_backend_that_never_greets_times_out_on_the_connection_deadline() -> None:
    async def main() -> None:
        deadlines = _session_deadlines(connect=0.05, login=60.0)
        task = asyncio.current_task()
        assert task is not None
        with pytest.raises(TimeoutError):
            await deadlines.within_backend(task, asyncio.Event().wait())
        assert task.cancelling() == 0

    asyncio.run(main())


def test_a_cancellation_during_the_backend_dialogue_that_is_not_a_deadline_goes_on() -> None:
    async def main() -> None:
        deadlines = _session_deadlines(connect=60.0, login=60.0)

        async def session() -> None:
            task = asyncio.current_task()
            assert task is not None
            await deadlines.within_backend(task, asyncio.Event().wait())

        task = asyncio.create_task(session())
        await asyncio.sleep(0)
        task.cancel()  # the proxy stopping
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

    asyncio.run(main())

"""Deadlines kept by one timer (``runners.proxy.deadlines``): a task past its deadline is cancelled and
told it was the deadline; a task done in time, or cancelled by someone else, is not mistaken for one."""

from __future__ import annotations

import asyncio

from runners.proxy.deadlines import Deadlines


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

"""Deadlines of many sessions kept by one timer: a task that is still inside its deadline when the
time is up is cancelled, and then learns (``expired``) that the cancellation was its deadline's.

Every session of a proxy has the same few deadlines (the login's, the backend's connection, the
backend's login), so the deadlines of one length expire in the order they were set: an ordered map
from task to due time, looked at from its oldest end by one timer, costs a session two dictionary
operations instead of a timer of its own (``asyncio.timeout``: a timer handle made, moved and
cancelled on the event loop per session, about 8 % of the proxy's instructions per IMAP session).
A deadline is late by at most ``tick``: 1/32 of its length, between 10 ms and 1 s (the backend's
connection, 1 s by default, is cut after at most 1.03 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from runners.plan.proxy_model import LimitsOption

_T = TypeVar("_T")


class Deadlines:
    """Deadlines of one length (``seconds``) for tasks of one event loop."""

    __slots__ = ("_due", "_expired", "_loop", "_timer", "seconds", "tick")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tick = min(1.0, max(0.01, seconds / 32))
        # A plain dict keeps its insertion order too, and its pop and set cost a third less than an
        # OrderedDict's (no node to allocate and link); the oldest entry is the first one.
        self._due: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, task: asyncio.Task[object]) -> None:
        """``task`` has ``seconds`` from now (started again: from now again)."""
        loop = task.get_loop()
        if loop is not self._loop:  # a new event loop (one per test): the old one's deadlines are moot
            self._loop, self._timer = loop, None
            self._due.clear()
            self._expired.clear()
        self._due.pop(task, None)
        self._due[task] = loop.time() + self.seconds
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._sweep, loop)

    def stop(self, task: asyncio.Task[object]) -> None:
        """``task`` is done with this deadline (in time or not)."""
        self._due.pop(task, None)
        if self._expired:  # nearly always empty: no call
            self._expired.discard(task)

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Whether ``task``'s cancellation was this deadline's; if so it is taken back (``uncancel``),
        so the task goes on as after any other error."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        due = self._due
        while due:
            task, when = next(iter(due.items()))
            if when > now:
                break
            del due[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()
        self._timer = loop.call_later(self.tick, self._sweep, loop) if due else None


class SessionDeadlines:
    """The deadlines every IMAP and POP3 session of a proxy has: its login (``login_timeout_seconds``),
    and within it the backend's connection and greeting (``backend_connect_seconds``), then the
    backend's login (``backend_login_seconds``)."""

    __slots__ = ("backend_connect", "backend_login", "login")

    def __init__(self, limits: LimitsOption) -> None:
        self.login = Deadlines(limits.login_timeout_seconds)
        self.backend_connect = Deadlines(limits.backend_connect_seconds)
        self.backend_login = Deadlines(limits.backend_login_seconds)

    def backend_greeted(self, task: asyncio.Task[object]) -> None:
        """The backend greeted: its login's deadline starts. (A connection deadline that expired
        already stays expired: the cancellation on its way is still the deadline's.)"""
        self.backend_connect._due.pop(task, None)
        self.backend_login.start(task)

    async def within_backend(self, task: asyncio.Task[object], dialogue: Awaitable[_T]) -> _T:
        """``dialogue`` (the backend's connection and login) awaited within the backend's deadlines:
        one of them cancelling ``task`` comes out as ``TimeoutError``, any other cancellation goes on
        as it came. (A coroutine, not a context manager: no object and two calls fewer a login.)"""
        connect, login = self.backend_connect, self.backend_login
        connect.start(task)  # then the login's, once the backend greeted (backend_greeted)
        try:
            return await dialogue
        except asyncio.CancelledError:
            if connect.expired(task) or login.expired(task):
                raise TimeoutError from None
            raise
        finally:
            connect.stop(task)
            login.stop(task)

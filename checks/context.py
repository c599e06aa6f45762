"""What a check gets to work with: the plan, the phase, per-server caps and shared, computed-once facts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from runners.engine.sessions import ServerSlots
from runners.plan.model import Plan

T = TypeVar("T")


class CheckContext:
    def __init__(self, plan: Plan, phase: str = "pre") -> None:
        self.plan = plan
        self.phase = phase
        self.timeout = plan.readiness.timeout
        self._per_server = plan.readiness.per_server
        self._lock = threading.Lock()
        self._servers = ServerSlots()
        self._facts: dict[str, Future[Any]] = {}

    def server(self, name: str) -> AbstractContextManager[None]:
        """Hold one of the ``[checks] per_server`` slots of a server (``dns:127.0.0.1:53``)."""
        return self._servers.hold(name, self._per_server, self.timeout)

    def fact(self, name: str, compute: Callable[[], T]) -> T:
        """Compute a shared fact once (the source survey, a directory export) for every check that asks.

        Concurrent askers wait for the first one's result; a failure is raised to each of them.
        """
        with self._lock:
            future = self._facts.get(name)
            owner = future is None
            if future is None:
                future = self._facts[name] = Future()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
        result: T = future.result()
        return result

"""The service's budget is the speed limit: pace requests inside it, shared by every worker.

Exchange and Microsoft 365 throttle per account or per mailbox: so many requests in flight, so many
per window, so many bytes uploaded per window. Past that they answer "busy" (ErrorServerBusy with
BackOffMilliseconds, 429 with Retry-After) and a client that keeps retrying makes it worse. A
``Pace`` is one scope's budget (an EWS service account on a server, a Graph mailbox), shared by all
the threads of the process that talk to it: each request waits in ``slot()`` until it may be sent,
and a back-off the server asked for holds every one of them, not just the thread that was told.

Windows are sliding (a log of what was sent in the last ``window`` seconds), which never sends more
in any window than the budget allows, whichever way the service counts its own.

``pace_snapshots()`` is what the engine writes to the state store while a wave runs, so that
``cutover status`` and the cockpit show back-offs and budget use.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runners.safe_text import safe

#: Without a wait from the server: exponential back-off with full jitter, from this base to this cap.
JITTER_BASE_SECONDS = 1.0
JITTER_CAP_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Budget:
    #: Requests in flight at once.
    concurrency: int | None = None
    #: (requests, window seconds): Graph allows (10_000, 600.0) per app and mailbox.
    requests: tuple[int, float] | None = None
    #: (bytes, window seconds): Graph allows (150_000_000, 300.0) of upload per app and mailbox.
    upload_bytes: tuple[int, float] | None = None
    #: A request stays in the windows from when it leaves until a window after its answer came
    #: (not after it left): the service counts it somewhere in between, so no slack is needed.
    counted_until_answer: bool = False


@dataclass(frozen=True, slots=True)
class PaceSnapshot:
    scope: str
    in_flight: int
    concurrency: int | None
    #: Seconds left of the back-off the server asked for (0 when none is in force).
    backoff_seconds: float
    backoff_reason: str | None
    #: Back-offs imposed so far (by the server or after a refusal without a wait).
    back_offs: int
    requests_in_window: int
    request_budget: int | None
    bytes_in_window: int
    byte_budget: int | None
    #: Total time callers spent waiting in ``slot()`` for this scope.
    waited_seconds: float


class _Window:
    """A sliding window: how much was spent in the last ``seconds``."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._spent: deque[tuple[float, int]] = deque()
        self.total = 0
        #: Spent by requests still waiting for their answer (``reserve``/``settle``).
        self.pending = 0

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.seconds:
            self.total -= self._spent.popleft()[1]

    def wait_for(self, amount: int, now: float) -> float:
        """Seconds until ``amount`` fits (0: now). An amount above the whole limit waits for an
        empty window, then goes: the server, not the pacer, refuses what can never fit."""
        self._expire(now)
        if self.total + self.pending + amount <= self.limit or not (self._spent or self.pending):
            return 0.0
        excess = self.total + self.pending + amount - self.limit
        freed = 0
        for stamp, spent in self._spent:
            freed += spent
            if freed >= excess:
                return max(0.0, stamp + self.seconds - now)
        if self.pending:
            return self.seconds  # a window after answers still to come, at the soonest
        return max(0.0, self._spent[-1][0] + self.seconds - now)

    def spend(self, amount: int, now: float) -> None:
        if amount:
            self._spent.append((now, amount))
            self.total += amount

    def reserve(self, amount: int) -> None:
        self.pending += amount

    def settle(self, amount: int, now: float) -> None:
        """The answer came: what was reserved is counted from now."""
        self.pending -= amount
        self.spend(amount, now)

    def used(self, now: float) -> int:
        self._expire(now)
        return self.total + self.pending


class Pace:
    """One scope's budget; thread-safe. Build it through ``pace_for``."""

    def __init__(
        self,
        scope: str,
        budget: Budget,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.scope = scope
        self.budget = budget
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Condition()
        self._in_flight = 0
        self._not_before = 0.0
        self._reason: str | None = None
        self._back_offs = 0
        self._waited = 0.0
        self._requests = _Window(*_window(budget.requests)) if budget.requests else None
        self._bytes = _Window(*_window(budget.upload_bytes)) if budget.upload_bytes else None

    @contextmanager
    def slot(self, upload_bytes: int = 0, requests: int = 1) -> Iterator[None]:
        """Wait until this scope may send one request carrying ``upload_bytes``, then hold a slot.
        A batch of ``requests`` (Graph's $batch) spends that many and holds up to every slot."""
        started = self._clock()
        width = min(requests, self.budget.concurrency or requests)
        with self._lock:
            while True:
                delay = self._delay(upload_bytes, requests, width)
                if delay <= 0:
                    break
                # Sleep on the condition: a slot freed early wakes the waiter; a window or a
                # back-off that ends is a timeout. Capped so that a new back-off is seen soon.
                self._lock.wait(timeout=min(delay, 1.0) if delay != float("inf") else 1.0)
            now = self._clock()
            self._in_flight += width
            windows = [
                (w, n) for w, n in ((self._requests, requests), (self._bytes, upload_bytes)) if w is not None
            ]
            for window, amount in windows:
                if self.budget.counted_until_answer:
                    window.reserve(amount)
                else:
                    window.spend(amount, now)
            self._waited += now - started
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= width
                if self.budget.counted_until_answer:
                    answered = self._clock()
                    for window, amount in windows:
                        window.settle(amount, answered)
                self._lock.notify_all()

    def room(self) -> tuple[int | None, int | None]:
        """Requests and upload bytes the windows take now (None: that window isn't limited)."""
        with self._lock:
            now = self._clock()
            return (
                self._requests.limit - self._requests.used(now) if self._requests else None,
                self._bytes.limit - self._bytes.used(now) if self._bytes else None,
            )

    def ready_in(self, upload_bytes: int, requests: int = 1) -> float:
        """Seconds until the windows take ``requests`` carrying ``upload_bytes`` (0: now), apart
        from slots and back-offs."""
        with self._lock:
            return self._windows_wait(upload_bytes, requests, self._clock())

    def _windows_wait(self, upload_bytes: int, requests: int, now: float) -> float:
        """Seconds until the windows take ``requests`` carrying ``upload_bytes`` (lock held)."""
        waits = [0.0]
        if self._requests is not None:
            waits.append(self._requests.wait_for(requests, now))
        if self._bytes is not None and upload_bytes:
            waits.append(self._bytes.wait_for(upload_bytes, now))
        return max(waits)

    def _delay(self, upload_bytes: int, requests: int = 1, width: int = 1) -> float:
        now = self._clock()
        waits = [self._not_before - now, self._windows_wait(upload_bytes, requests, now)]
        if self.budget.concurrency is not None and self._in_flight + width > self.budget.concurrency:
            waits.append(float("inf"))
        return max(waits)

    def back_off(self, seconds: float, reason: str) -> None:
        """The server said wait: nobody in this scope sends until then. A shorter back-off never
        shortens a longer one already in force."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._back_offs += 1
            if until > self._not_before:
                self._not_before = until
                self._reason = safe(reason)
            self._lock.notify_all()

    def back_off_jittered(self, attempt: int, reason: str) -> float:
        """The server refused without saying how long to wait: exponential back-off with full
        jitter (so that the workers of a scope don't all come back at once). Returns the wait."""
        import random  # here: a run whose target paces nothing (IMAP) never needs it (start-up)

        ceiling = min(JITTER_CAP_SECONDS, JITTER_BASE_SECONDS * 2 ** max(0, attempt))
        seconds = random.uniform(JITTER_BASE_SECONDS / 2, ceiling)
        self.back_off(seconds, reason)
        return seconds

    def snapshot(self) -> PaceSnapshot:
        with self._lock:
            now = self._clock()
            left = max(0.0, self._not_before - now)
            return PaceSnapshot(
                scope=self.scope,
                in_flight=self._in_flight,
                concurrency=self.budget.concurrency,
                backoff_seconds=left,
                backoff_reason=self._reason if left > 0 else None,
                back_offs=self._back_offs,
                requests_in_window=self._requests.used(now) if self._requests else 0,
                request_budget=self._requests.limit if self._requests else None,
                bytes_in_window=self._bytes.used(now) if self._bytes else 0,
                byte_budget=self._bytes.limit if self._bytes else None,
                waited_seconds=self._waited,
            )


def _window(pair: tuple[int, float]) -> tuple[int, float]:
    limit, seconds = pair
    if limit <= 0 or seconds <= 0:
        raise ValueError(f"a budget window needs a positive limit and length, not {pair}")
    return limit, seconds


_REGISTRY: dict[str, Pace] = {}
_REGISTRY_LOCK = threading.Lock()


def pace_for(scope: str, budget: Budget) -> Pace:
    """The process's one ``Pace`` for ``scope`` (made with ``budget`` the first time it is asked)."""
    with _REGISTRY_LOCK:
        pace = _REGISTRY.get(scope)
        if pace is None:
            pace = _REGISTRY[scope] = Pace(scope, budget)
        return pace


def pace_snapshots() -> list[PaceSnapshot]:
    with _REGISTRY_LOCK:
        paces = list(_REGISTRY.values())
    return [pace.snapshot() for pace in paces]


def forget_paces() -> None:
    """Drop every scope (a new run in the same process starts with fresh budgets)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()

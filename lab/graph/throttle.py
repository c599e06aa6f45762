"""The per app per mailbox budget, enforced as the Outlook service does it.

https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits: per app ID and
mailbox, 4 concurrent requests, 10,000 API requests in 10 minutes, 150 MB upload (PATCH, POST,
PUT) in 5 minutes. https://learn.microsoft.com/en-us/graph/throttling: a 429 carries Retry-After
in seconds. The MailboxConcurrency 429 often comes without Retry-After (exchange-targets.md);
whether it carries one is Limits.concurrency_retry_after.

Windows slide (the docs don't say whether they are fixed or sliding); a request answered 429 does
not count against the window (the docs are silent on that too).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from lab.graph.config import Limits
from lab.graph.errors import GraphError


@dataclass(frozen=True, slots=True)
class ThrottleEvent:
    """One 429 the emulator answered."""

    at: float  # time.time()
    app_id: str
    mailbox: str
    reason: str  # "MailboxConcurrency", "Requests", "UploadBytes"
    retry_after: int | None


@dataclass(slots=True)
class _Budget:
    in_flight: int = 0
    requests: deque[float] = field(default_factory=deque)
    uploads: deque[tuple[float, int]] = field(default_factory=deque)
    upload_total: int = 0


class Throttle:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Condition()
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self.events: list[ThrottleEvent] = []
        self.peak_in_flight: dict[str, int] = {}

    def admit(self, app_id: str, mailbox: str, upload_bytes: int) -> None:
        """Take a concurrency slot and a place in the windows, or raise the 429."""
        limits = self.limits
        now = time.monotonic()
        with self._lock:
            budget = self._budgets.setdefault((app_id, mailbox), _Budget())
            while budget.requests and budget.requests[0] <= now - limits.request_window:
                budget.requests.popleft()
            while budget.uploads and budget.uploads[0][0] <= now - limits.upload_window:
                budget.upload_total -= budget.uploads.popleft()[1]
            if budget.in_flight >= limits.concurrency:
                raise self._refuse(app_id, mailbox, "MailboxConcurrency", limits.concurrency_retry_after)
            if len(budget.requests) >= limits.requests:
                wait = budget.requests[0] + limits.request_window - now
                raise self._refuse(app_id, mailbox, "Requests", max(1, math.ceil(wait)))
            if upload_bytes and budget.upload_total + upload_bytes > limits.upload_bytes and budget.uploads:
                wait = budget.uploads[0][0] + limits.upload_window - now
                raise self._refuse(app_id, mailbox, "UploadBytes", max(1, math.ceil(wait)))
            budget.in_flight += 1
            self.peak_in_flight[mailbox] = max(self.peak_in_flight.get(mailbox, 0), budget.in_flight)
            budget.requests.append(now)
            if upload_bytes:
                budget.uploads.append((now, upload_bytes))
                budget.upload_total += upload_bytes
            self._lock.notify_all()

    def release(self, app_id: str, mailbox: str) -> None:
        with self._lock:
            self._budgets[(app_id, mailbox)].in_flight -= 1
            self._lock.notify_all()

    def in_flight(self, mailbox: str) -> int:
        with self._lock:
            return sum(b.in_flight for (_, m), b in self._budgets.items() if m == mailbox)

    def wait_in_flight(self, mailbox: str, count: int, timeout: float) -> bool:
        """Block until at least count requests for the mailbox are in flight (for tests)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight_locked(mailbox) >= count, timeout)

    def _in_flight_locked(self, mailbox: str) -> int:
        return sum(b.in_flight for (_, m), b in self._budgets.items() if m == mailbox)

    def _refuse(self, app_id: str, mailbox: str, reason: str, retry_after: int | None) -> GraphError:
        self.events.append(ThrottleEvent(time.time(), app_id, mailbox, reason, retry_after))
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if reason == "MailboxConcurrency":
            # The words the service uses for this limit (Microsoft Q&A 734143, 1660054).
            return GraphError(
                429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", headers
            )
        return GraphError(429, "TooManyRequests", "Please retry again later.", headers)

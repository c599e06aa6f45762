"""Faults a test orders: a dropped connection after a create succeeded, 503s, slow answers, a
"poison" MIME that importMime fails every time, and a gate that holds requests in flight until
released (to reach the concurrency limit without timing)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Rule:
    kind: str  # "drop_after_create", "503", "slow"
    remaining: int
    mailbox: str | None
    seconds: float = 0.0
    retry_after: int | None = None


class Gate:
    """Holds every request for a mailbox (after it took its concurrency slot) until released."""

    def __init__(self, mailbox: str) -> None:
        self.mailbox = mailbox
        self._released = threading.Event()
        self._held = 0
        self._condition = threading.Condition()

    def hold(self) -> None:
        with self._condition:
            self._held += 1
            self._condition.notify_all()
        self._released.wait(60)
        with self._condition:
            self._held -= 1

    def wait_held(self, count: int, timeout: float = 10.0) -> bool:
        """Block until count requests are held."""
        with self._condition:
            return self._condition.wait_for(lambda: self._held >= count, timeout)

    def release(self) -> None:
        self._released.set()


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._gates: dict[str, Gate] = {}
        self.dropped: list[str] = []  # immutable ids of items created whose answer was dropped
        #: (bytes, mailbox or None): an importMime whose MIME holds them answers 500, every time.
        self._poisons: list[tuple[bytes, str | None]] = []

    def add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def poison(self, marker: bytes, mailbox: str | None) -> None:
        with self._lock:
            self._poisons.append((marker, mailbox))

    def poisoned(self, mailbox: str, mime: bytes) -> bool:
        with self._lock:
            return any(marker in mime and where in (None, mailbox) for marker, where in self._poisons)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._poisons.clear()
            gates = list(self._gates.values())
            self._gates.clear()
        for gate in gates:
            gate.release()

    def gate(self, mailbox: str) -> Gate:
        with self._lock:
            gate = self._gates.get(mailbox)
            if gate is None:
                gate = self._gates[mailbox] = Gate(mailbox)
            return gate

    def remove_gate(self, gate: Gate) -> None:
        with self._lock:
            if self._gates.get(gate.mailbox) is gate:
                del self._gates[gate.mailbox]
        gate.release()

    def _take(self, kind: str, mailbox: str | None) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.kind == kind and rule.remaining > 0 and rule.mailbox in (None, mailbox):
                    rule.remaining -= 1
                    return rule
        return None

    def before(self, mailbox: str | None) -> _Rule | None:
        """Slow rules sleep here; a 503 rule is returned for the caller to answer."""
        slow = self._take("slow", mailbox)
        if slow is not None:
            time.sleep(slow.seconds)
        if mailbox is not None:
            with self._lock:
                gate = self._gates.get(mailbox)
            if gate is not None:
                gate.hold()
        return self._take("503", mailbox)

    def drop_after_create(self, mailbox: str) -> bool:
        return self._take("drop_after_create", mailbox) is not None


def rule(
    kind: str, count: int, mailbox: str | None, seconds: float = 0.0, retry_after: int | None = None
) -> _Rule:
    return _Rule(kind, count, mailbox, seconds, retry_after)

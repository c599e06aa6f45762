"""The state an emulator's request handlers share: config, store, counters, injected faults."""

from __future__ import annotations

import datetime
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from lab.ews.config import EwsConfig
from lab.ews.store import Store

INJECTION_KINDS = ("drop_after", "http_503", "slow", "server_busy", "item_error")


@dataclass(slots=True)
class Injection:
    kind: str
    operation: str
    remaining: int
    seconds: float = 0.0
    back_off_ms: int = 0
    gate: threading.Event | None = None
    code: str = ""  # "item_error": the ResponseCode each affected item gets  # "hold": the request waits until the test sets it


class Engine:
    """The state an emulator's request handlers share: config, store, counters, injections."""

    def __init__(self, config: EwsConfig, now: Callable[[], datetime.datetime]) -> None:
        self.config = config
        self.now = now
        self.store = Store([(smtp, limits.has_archive) for smtp, limits in config.mailboxes.items()])
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.unknown: list[str] = []
        self.in_flight: Counter[str] = Counter()
        self.injections: list[Injection] = []
        #: Markers of poison items (``EwsEmulator.poison``): a CreateItem meeting one hangs up.
        self.poisons: list[bytes] = []
        self.base_url = ""

    def take_injection(self, operation: str, kinds: tuple[str, ...]) -> Injection | None:
        with self.lock:
            for injection in self.injections:
                if injection.operation == operation and injection.kind in kinds and injection.remaining > 0:
                    injection.remaining -= 1
                    return injection
        return None

    def take_item_fault(self, operation: str) -> str | None:
        """The code the next item of ``operation`` fails with, if a test injected one."""
        injection = self.take_injection(operation, ("item_error",))
        return injection.code if injection is not None else None

    def poisoned(self, raw: bytes) -> bool:
        with self.lock:
            return any(marker in raw for marker in self.poisons)

    def record_unknown(self, what: str) -> None:
        with self.lock:
            self.unknown.append(what)

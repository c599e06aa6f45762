"""The per-server connection caps held in the shared store, so they hold across runner hosts: the
legacy platform counts our connections, not our hosts. Same interface as the in-process
``ServerSlots`` (``runners.engine.sessions``); used when the plan's store is shared (PostgreSQL).

A slot is a row (``runners.state.server_slots``) held under this process's name until its lease
expires; the lease keeper renews them with the mailbox leases, so a host that dies gives its
connections back after one lease at the latest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runners.state.store import StateStore

#: How often a runner waiting for a free slot asks the store again.
POLL_SECONDS = 0.2


class StoreSemaphore:
    """One server's slots in the store, for this process: ``acquire``/``release`` like a semaphore."""

    def __init__(
        self,
        store: StateStore,
        server: str,
        limit: int,
        holder: str,
        seconds: float,
        dead: Callable[[], list[str]] = list,
    ) -> None:
        self._store, self._server, self._limit = store, server, limit
        self._holder, self._seconds, self._dead = holder, seconds, dead
        self._held: list[int] = []
        self._lock = threading.Lock()
        self._ensured = False

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._ensured:
            self._store.ensure_slots(self._server, self._limit)
            self._ensured = True
        while True:
            slot = self._store.take_slot(self._server, self._limit, self._holder, self._seconds, self._dead())
            if slot is not None:
                with self._lock:
                    self._held.append(slot)
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(POLL_SECONDS)

    def release(self) -> None:
        with self._lock:
            slot = self._held.pop()
        self._store.give_slot(self._server, slot, self._holder)


class StoreSlots:
    """At most ``limit`` connections per server name across every runner of the store."""

    def __init__(
        self, store: StateStore, holder: str, seconds: float, dead: Callable[[], list[str]] = list
    ) -> None:
        self._store, self._holder, self._seconds, self._dead = store, holder, seconds, dead
        self._lock = threading.Lock()
        self._slots: dict[str, StoreSemaphore] = {}

    def semaphore(self, name: str, limit: int) -> StoreSemaphore:
        with self._lock:
            sem = self._slots.get(name)
            if sem is None:
                sem = self._slots[name] = StoreSemaphore(
                    self._store, name, limit, self._holder, self._seconds, self._dead
                )
            return sem

    @contextmanager
    def hold(self, name: str, limit: int, timeout: float | None = None) -> Iterator[None]:
        """Hold one slot of ``name``; TimeoutError when none frees up within ``timeout`` seconds."""
        sem = self.semaphore(name, limit)
        if not sem.acquire(timeout=timeout):
            raise TimeoutError(f"waited {timeout or 0:.0f} s for a free connection slot to {name}")
        try:
            yield
        finally:
            sem.release()

"""Opening source and target sessions for one mailbox, under the per-server connection limit.

``ServerSlots`` is the one per-server limit (the engine's ``max_connections``, the readiness
checks' ``per_server``); ``ConnectionCaps`` opens sessions under it through the adapter registry,
so the engine never asks which protocol it is talking to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar, cast

from runners.adapters import opener, source_adapter, target_adapter, target_capabilities
from runners.connectors.base import SourceSession, TargetSession
from runners.plan.model import Endpoint, MailboxEntry, Plan

T = TypeVar("T")


class Slot(Protocol):
    """One server's connection slots: what ``ConnectionCaps`` takes and gives back."""

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...


class SlotPool(Protocol):
    """Where the per-server slots are kept: this process (``ServerSlots``) or the shared store
    (``runners.engine.store_slots.StoreSlots``, for a fleet of runner hosts)."""

    def semaphore(self, name: str, limit: int) -> Slot: ...


class ServerSlots:
    """At most ``limit`` holders at once per server name, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def semaphore(self, name: str, limit: int) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._slots.get(name)
            if sem is None:
                sem = self._slots[name] = threading.BoundedSemaphore(limit)
            return sem

    @contextmanager
    def hold(self, name: str, limit: int, timeout: float | None = None) -> Iterator[None]:
        """Hold one slot of ``name``; TimeoutError when none frees up within ``timeout`` seconds."""
        sem = self.semaphore(name, limit)
        if not sem.acquire(timeout=timeout):
            raise TimeoutError(f"waited {timeout:.0f} s for a free connection slot to {name}")
        try:
            yield
        finally:
            sem.release()


def open_source(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    """A logged-in source session for ``entry``, by the adapter the plan's ``type`` names (no cap)."""
    return cast(SourceSession, opener(source_adapter(endpoint.type))(endpoint, entry))


def open_target(endpoint: Endpoint, entry: MailboxEntry) -> TargetSession:
    """A logged-in target session for ``entry``, by the adapter the plan's ``type`` names (no cap)."""
    return cast(TargetSession, opener(target_adapter(endpoint.type))(endpoint, entry))


class ConnectionCaps:
    """Opens sessions so that no server gets more than its ``max_connections`` from us, and no
    target mailbox more than its adapter's ``connections_per_mailbox``."""

    def __init__(self, slots: SlotPool | None = None) -> None:
        self.slots = slots or ServerSlots()
        # One runner holds a mailbox at a time, so its own cap is kept in this process.
        self.mailbox_slots = ServerSlots()

    def semaphore(self, endpoint: Endpoint) -> Slot:
        return self.slots.semaphore(endpoint.address, endpoint.max_connections)

    def open_source(self, endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
        """Open under the cap; give it back with ``close_source``."""
        return capped(self.semaphore(endpoint), lambda: open_source(endpoint, entry))

    def open_target(self, endpoint: Endpoint, entry: MailboxEntry) -> TargetSession:
        """Open under the server's and the mailbox's caps; give it back with ``close_target``."""
        per_mailbox = self._mailbox_slot(endpoint, entry)
        per_mailbox.acquire()
        try:
            return capped(self.semaphore(endpoint), lambda: open_target(endpoint, entry))
        except BaseException:
            per_mailbox.release()
            raise

    def try_open_source(self, endpoint: Endpoint, entry: MailboxEntry) -> SourceSession | None:
        """Like ``open_source``, but None at once when the server has no free slot: for a mailbox's
        extra connections, which must never wait for (or hold up) another mailbox's first one."""
        sem = self.semaphore(endpoint)
        if not sem.acquire(timeout=0):
            return None
        return capped_held(sem, lambda: open_source(endpoint, entry))

    def try_open_target(self, endpoint: Endpoint, entry: MailboxEntry) -> TargetSession | None:
        """Like ``open_target``, but None at once when the server or the mailbox has no free slot."""
        per_mailbox = self._mailbox_slot(endpoint, entry)
        if not per_mailbox.acquire(timeout=0):
            return None
        sem = self.semaphore(endpoint)
        if not sem.acquire(timeout=0):
            per_mailbox.release()
            return None
        try:
            return capped_held(sem, lambda: open_target(endpoint, entry))
        except BaseException:
            per_mailbox.release()
            raise

    def close_source(self, endpoint: Endpoint, session: SourceSession) -> None:
        try:
            session.close()
        finally:
            self.semaphore(endpoint).release()

    def close_target(self, endpoint: Endpoint, entry: MailboxEntry, session: TargetSession) -> None:
        try:
            session.close()
        finally:
            self.semaphore(endpoint).release()
            self._mailbox_slot(endpoint, entry).release()

    def _mailbox_slot(self, endpoint: Endpoint, entry: MailboxEntry) -> threading.BoundedSemaphore:
        tolerated = target_capabilities(endpoint.type).connections_per_mailbox
        return self.mailbox_slots.semaphore(f"{endpoint.address}/{entry.target}", tolerated)

    @contextmanager
    def both(self, plan: Plan, entry: MailboxEntry) -> Iterator[tuple[SourceSession, TargetSession]]:
        """A source and a target session for one mailbox, closed and given back on leaving."""
        source = self.open_source(plan.source, entry)
        try:
            target = self.open_target(plan.target, entry)
        except BaseException:
            self.close_source(plan.source, source)
            raise
        try:
            yield source, target
        finally:
            self.close_source(plan.source, source)
            self.close_target(plan.target, entry, target)


def capped(sem: Slot, open_session: Callable[[], T]) -> T:
    """Open under the cap; the caller releases ``sem`` when it closes the session."""
    sem.acquire()
    try:
        return open_session()
    except BaseException:
        sem.release()
        raise


def capped_held(sem: Slot, open_session: Callable[[], T]) -> T:
    """Open with a slot of ``sem`` already held; given back if opening fails."""
    try:
        return open_session()
    except BaseException:
        sem.release()
        raise

"""The runner's heartbeat: one thread per process renews its mailbox leases, its connection slots and
its row in ``fleet_hosts`` every third of the lease, so a live runner never loses a mailbox and a
dead (or frozen) one loses them all after one lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from runners.state.errors import StoreError
from runners.state.fence import Lease
from runners.state.store import StateStore

log = logging.getLogger("cutover.engine")

#: The heartbeat comes this many times per lease.
BEATS_PER_LEASE = 3


def default_name() -> str:
    """A runner's identity in the store when it is given none: ``hostname:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """Holds this process's leases and renews them in the background."""

    def __init__(self, store: StateStore, name: str, seconds: float, state: str = "working") -> None:
        self.store, self.name, self.seconds = store, name, seconds
        self._state = state
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._dead: list[str] = []
        self._dead_at = 0.0
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> LeaseKeeper:
        self.store.register_host(self.name, self._state)
        self._thread.start()
        return self

    def stop(self, state: str = "stopped") -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.store.host_beat(self.name, state)
        except StoreError as exc:
            log.warning("could not record that runner %s stopped: %s", self.name, exc)

    def set_state(self, state: str) -> None:
        self._state = state

    def hold(self, lease: Lease) -> None:
        with self._lock:
            self._leases[lease.mailbox_id] = lease

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(lease.mailbox_id, None)

    def held(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def dead_holders(self) -> list[str]:
        """Runner names of this host whose process is gone (asked of the store at most once a second)."""
        now = time.monotonic()
        if now - self._dead_at > 1.0:
            self._dead, self._dead_at = self.store.dead_holders(), now
        return self._dead

    def beat(self) -> None:
        """One heartbeat: every lease, every slot, this runner's row."""
        leases = self.held()
        if leases:
            for lost in self.store.renew_leases(leases):
                log.warning("%s: lease lost (another runner took the mailbox over)", lost.source)
        self.store.renew_slots(self.name, self.seconds)
        self.store.host_beat(self.name, self._state)

    def _loop(self) -> None:
        interval = self.seconds / BEATS_PER_LEASE
        try:
            while not self._stop.wait(interval):
                try:
                    self.beat()
                except StoreError as exc:  # the next beat tries again; the lease check stops sends
                    log.warning("heartbeat failed: %s", exc)
        finally:
            self.store.close_thread()

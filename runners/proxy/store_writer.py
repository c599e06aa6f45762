"""The proxy's writes to the state store, off its event loop: rows are gathered in memory and committed
from one thread, one transaction per interval (~100 ms), never one per login.

A login costs the proxy an append under a lock. When the store can't keep up (a locked or full disk),
what waits is bounded (``max_pending``): the oldest journal rows are dropped first, counted and logged,
so the proxy's memory never grows with the store's trouble and no login ever waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

from runners.plan.state_model import StateServer
from runners.state.errors import StoreError
from runners.state.open_store import open_store_at
from runners.state.proxy_rows import (
    JournalLimits,
    LoginRow,
    ProxyBatch,
    QueuedLogin,
    SealedCredential,
    SessionCounts,
)
from runners.state.store import StateStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.1
#: How often the journal is pruned by age and total size (per-user bounds are kept at every batch).
PRUNE_EVERY = 60.0


class StoreWriter:
    """Commits the proxy's rows from its own thread. ``add_*`` never block on the store."""

    def __init__(
        self,
        state_db: Path,
        *,
        server: StateServer | None = None,
        interval: float = DEFAULT_INTERVAL,
        limits: JournalLimits | None = None,
        max_pending: int = 100_000,
    ) -> None:
        self.state_db, self.server = state_db, server
        self.interval = interval
        self.limits = limits or JournalLimits()
        self.max_pending = max_pending
        #: Transactions committed, and journal rows dropped because the store could not keep up.
        self.batches = 0
        self.dropped = 0
        self._logins: deque[LoginRow] = deque()
        self._credentials: list[SealedCredential] = []
        self._queued: list[QueuedLogin] = []
        self._sessions: SessionCounts | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition(self._lock)
        self._submitted = 0
        self._committed = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._store: StateStore | None = None

    # -- the proxy's side: cheap appends -----------------------------------------------------------

    def add_login(self, row: LoginRow) -> None:
        # acquire/release, not ``with``: the statement looks up and binds the lock's __enter__ and
        # __exit__ at each login (a third of this method's instructions).
        lock = self._lock
        lock.acquire()
        try:
            if len(self._logins) >= self.max_pending:
                self._logins.popleft()
                self.dropped += 1
            self._logins.append(row)
            self._submitted += 1
        finally:
            lock.release()

    def add_credential(self, sealed: SealedCredential) -> None:
        with self._lock:
            self._credentials = [
                c for c in self._credentials if (c.user, c.backend) != (sealed.user, sealed.backend)
            ]
            self._credentials.append(sealed)
            self._submitted += 1

    def add_queued(self, queued: QueuedLogin) -> None:
        with self._lock:
            self._queued.append(queued)
            self._submitted += 1

    def set_sessions(self, counts: SessionCounts) -> None:
        with self._lock:
            self._sessions = counts  # only the newest counts matter
            self._submitted += 1

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> StateStore:
        """Open (create or upgrade) the store and start the writing thread; returns the store."""
        self._store = open_store_at(self.state_db, self.server)
        self._thread = threading.Thread(target=self._run, name="proxy-store-writer", daemon=True)
        self._thread.start()
        return self._store

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything added so far had its write attempt (``dropped`` and the log say what the
        store refused); False on timeout."""
        with self._lock:
            target = self._submitted
            self._wake.set()
            return self._done.wait_for(lambda: self._committed >= target or self._thread is None, timeout)

    def close(self, proxy: str | None = None) -> None:
        """Commit what is left, stop the thread, and (``proxy``) take this proxy's session counts away."""
        if self._thread is None:
            return
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join()
        self._thread = None
        if self._store is not None:
            try:
                if proxy is not None:
                    self._store.forget_proxy_sessions(proxy)
            except StoreError as exc:
                log.warning("proxy: the session counts could not be cleared: %s", exc)
            self._store.close()

    # -- the writing thread ------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._store is not None
        store = self._store
        pruned = time.monotonic()
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            with self._lock:
                stopping = self._stopping
                batch, upto = self._take()
            self._write(store, batch)
            if time.monotonic() - pruned >= PRUNE_EVERY:
                pruned = time.monotonic()
                self._prune(store)
            with self._lock:
                self._committed = max(self._committed, upto)
                self._done.notify_all()
            if stopping:  # everything added before close() was in this last batch
                break
        store.close()

    def _take(self) -> tuple[ProxyBatch, int]:
        batch = ProxyBatch(list(self._logins), self._credentials, self._queued, self._sessions)
        self._logins.clear()
        self._credentials, self._queued, self._sessions = [], [], None
        return batch, self._submitted

    def _write(self, store: StateStore, batch: ProxyBatch) -> None:
        if not batch:
            return
        try:
            store.record_proxy_batch(batch, self.limits)
            self.batches += 1
        except StoreError as exc:
            # Never the login's problem: say so and carry on; the rows are put back for the next try.
            log.warning("proxy: %d login(s) not written to the state store yet: %s", len(batch.logins), exc)
            with self._lock:
                self._logins.extendleft(reversed(batch.logins))
                while len(self._logins) > self.max_pending:
                    self._logins.popleft()
                    self.dropped += 1
                self._credentials = batch.credentials + self._credentials
                self._queued = batch.queued + self._queued
        except Exception:  # a bug of ours: this batch is lost, said so, and the writer goes on
            log.exception("proxy: a batch of %d login(s) could not be written", len(batch.logins))
            with self._lock:
                self.dropped += len(batch.logins)

    def _prune(self, store: StateStore) -> None:
        try:
            store.prune_proxy_journal(self.limits)
        except StoreError as exc:
            log.warning("proxy: the login journal could not be pruned: %s", exc)

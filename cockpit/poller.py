"""Reads a snapshot of the state store in a thread and posts it to the app.

On SQLite it polls twice a second. On PostgreSQL (``[state] url``) it waits for the store's
notifications instead (a runner on any host committed a change the cockpit shows: LISTEN/NOTIFY) and
reads then, at most every ``MIN_SPACING`` seconds however busy the fleet, and every ``QUIET_INTERVAL``
seconds when nothing is said (the clocks on screen move on). A poke (after an action) reads at once.

One loop, so polls never overlap; a slow read just makes the next one later. Beside it a second
thread serves a view that just opened or changed its filter: it reads that view's rows at once and
delivers them in the last snapshot (``with_rows``), without waiting for a read of the whole fleet under
way (at 100,000 mailboxes, most of a second: cockpit_bench.py's slowest key was opening the
mailboxes). Snapshots are immutable, so the UI thread can keep and compare them freely.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from runners.plan.model import Plan
from runners.state.backend import Backend
from runners.state.mailbox_views import MailboxQuery
from runners.state.open_store import open_store
from runners.state.read_models.snapshot import ALL, LedgerCache, Snapshot, take, with_rows
from runners.state.store import StateStore

INTERVAL = 0.5
#: With notifications: the least time between two reads (a busy fleet commits many times a second) ...
MIN_SPACING = 0.25
#: ... and the most, when nothing is said.
QUIET_INTERVAL = 5.0
#: How long one wait for a notification lasts before a poke or a stop is looked at.
_SLICE = 0.05
#: Mailboxes whose ledger is re-summed per poll at most (the rest keep their last sums a little longer).
LEDGER_PER_POLL = 100


class SnapshotPoller:
    def __init__(
        self,
        plan: Plan,
        deliver: Callable[[Snapshot], object],
        interval: float = INTERVAL,
        query: Callable[[], MailboxQuery | None] = lambda: ALL,
        *,
        read_only: bool = False,
        failed: Callable[[Exception], object] = lambda error: None,
        quiet_interval: float = QUIET_INTERVAL,
    ) -> None:
        self.plan = plan
        #: Told when a poll fails (the store can't be read): once per distinct error, and polling
        #: goes on, so a view never silently freezes on its last picture.
        self.failed = failed
        #: Open the store read-only (``tui --read-only``): it may then belong to another account.
        self.read_only = read_only
        self.deliver = deliver
        #: What the visible view shows: only those mailbox rows are read (hidden views cost nothing).
        self.query = query
        self.interval = interval
        #: The longest wait for a notification (PostgreSQL) before reading anyway.
        self.quiet_interval = quiet_interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="snapshots", daemon=True)
        #: Shared by both threads: the ledger sums and the plan's counts (dict reads, under the GIL).
        self._ledger = LedgerCache(per_poll=LEDGER_PER_POLL)
        #: The last whole snapshot delivered (what a view's early rows are delivered in).
        self._latest: Snapshot | None = None
        self._rows_wake = threading.Event()
        self._rows_thread = threading.Thread(target=self._rows_loop, name="snapshot-rows", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._rows_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._rows_wake.set()

    def poke(self) -> None:
        """Poll now (after an action), not at the next tick; a view's new rows at once."""
        self._wake.set()
        self._rows_wake.set()

    def poke_rows(self) -> None:
        """A view's new rows at once, the whole poll at its time: a view of few rows (one mailbox's)
        is read alone, not beside a read of the whole fleet competing with it for the interpreter."""
        self._rows_wake.set()

    def _rows_loop(self) -> None:
        """When poked: the visible view's rows, delivered in the last whole snapshot."""
        store: StateStore | None = None
        try:
            while not self._stop.is_set():
                self._rows_wake.wait()
                self._rows_wake.clear()
                latest, query = self._latest, self.query()
                if self._stop.is_set() or query is None:
                    continue
                if latest is None:  # no whole read yet: the first reads this view's rows
                    self._wake.set()
                    continue
                # Always delivered, never skipped as "shown already": a view drops a snapshot read for
                # another query (a window it has left), so what was delivered last is not what it shows.
                if query == latest.query:  # the last whole read has them: the view went and came back
                    self.deliver(latest)
                    continue
                try:
                    store = store or open_store(self.plan, read_only=True)  # it only reads
                    self.deliver(with_rows(store, self.plan, latest, query, self._ledger))
                except Exception:  # the whole poll that follows reports it
                    if store is not None:
                        store.close()
                        store = None
        finally:
            if store is not None:
                store.close()

    def _loop(self) -> None:
        store: StateStore | None = None
        ledger = self._ledger
        last_error = ""
        try:
            while not self._stop.is_set():
                try:
                    if store is None:
                        store = open_store(self.plan, read_only=self.read_only)
                    snapshot = take(store, self.plan, query=self.query(), ledger=ledger)
                    self.deliver(snapshot)
                    self._latest = snapshot
                    last_error = ""
                    self._wait(store.backend)
                except Exception as error:  # the app must hear of it, not freeze on a stale picture
                    if store is not None:
                        store.close()
                        store = None  # open afresh next time: the file may have been replaced
                    if str(error) != last_error:
                        last_error = str(error)
                        self.failed(error)
                    self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            if store is not None:
                store.close()

    def _wait(self, backend: Backend) -> None:
        """Until the next read: a poke, a stop, a change announced, or the interval."""
        if not backend.notifies:
            self._wake.wait(self.interval)
            return
        started = time.monotonic()
        while not self._wake.is_set():
            left = started + self.quiet_interval - time.monotonic()
            if left <= 0:
                return
            if backend.wait_for_change(min(_SLICE, left)):
                # Let a burst of commits settle into one read.
                self._wake.wait(max(0.0, started + MIN_SPACING - time.monotonic()))
                return

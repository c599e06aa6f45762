"""Pause, resume and cancel a running wave or one of its mailboxes, through the state store.

Requests are rows in ``controls``; a watcher thread in the runner reads new rows twice a second and
keeps the effective state in memory, so the copy loop only checks a dictionary between batches. A
paused mailbox finishes its current batch (everything recorded) and waits; cancel stops it the same
way, leaving it for the next run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from runners.engine import faults
from runners.state.statuses import ControlAction
from runners.state.store import StateStore

POLL_SECONDS = 0.5
ACTIONS = tuple(ControlAction)


def request(
    store: StateStore,
    action: str,
    *,
    wave: str | None = None,
    mailbox: str | None = None,
    requested_by: str | None = None,
) -> int:
    if action not in ACTIONS:
        raise ValueError(f"unknown control action {action!r}")
    return store.request_control(ControlAction(action), wave=wave, mailbox=mailbox, requested_by=requested_by)


class ControlWatcher:
    """The effective control state of one run's mailboxes, refreshed from the store in the background."""

    def __init__(
        self,
        store: StateStore,
        wave: str,
        mailboxes: list[str],
        poll: float = POLL_SECONDS,
        *,
        after_id: int | None = None,
    ) -> None:
        self._store: StateStore | None = store  # each thread reads it on a connection of its own
        self._wave = wave
        self._mailboxes = set(mailboxes)
        self._poll = poll
        self._state: dict[str, ControlAction] = {}  # mailbox -> pause | cancel
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._last_id = 0
        self._after_id = after_id  # the run's own watermark (``runs.controls_from``), when it has one
        self._thread = threading.Thread(target=self._loop, name="controls", daemon=True)

    def start(self) -> ControlWatcher:
        # The requests after the run's watermark apply to it: the same ones for the process that
        # started the run and for a runner joining it later (`cutover runner`), which replays them
        # before it takes a mailbox, so a wave paused before this host joined stays paused here too.
        # Requests older than the run don't apply to it. A run from before the watermark was kept
        # starts from the newest request.
        assert self._store is not None
        if self._after_id is None:
            self._last_id = self._store.last_control_id()
        else:
            self._last_id = self._after_id
            self.refresh(self._store)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        store = self._store
        assert store is not None  # set by start()
        try:
            while not self._stop.wait(self._poll):
                self.refresh(store)
        finally:
            store.close_thread()

    def refresh(self, store: StateStore) -> None:
        rows = store.controls_after(self._last_id)
        if not rows:
            return
        with self._changed:
            for row in rows:
                self._last_id = row.id
                if row.wave not in (None, self._wave):
                    continue
                targets = [row.mailbox] if row.mailbox else list(self._mailboxes)
                for mailbox in targets:
                    if mailbox not in self._mailboxes:
                        continue
                    if row.action == ControlAction.RESUME:
                        self._state.pop(mailbox, None)
                    elif self._state.get(mailbox) != ControlAction.CANCEL:  # cancel is final for this run
                        self._state[mailbox] = row.action
            self._changed.notify_all()
        store.mark_controls_seen(self._last_id)

    def checkpoint(
        self, mailbox: str, on_pause: Callable[[], None] | None = None, abort: threading.Event | None = None
    ) -> bool:
        """Called between batches: waits while the mailbox is paused (or until ``abort``); False when
        it must stop because it was cancelled."""
        with self._changed:
            while self._state.get(mailbox) == ControlAction.PAUSE and not self._stop.is_set():
                if abort is not None and abort.is_set():
                    break
                if on_pause is not None:
                    on_pause()
                    on_pause = None
                faults.reached("paused")
                self._changed.wait(self._poll)
            return self._state.get(mailbox) != ControlAction.CANCEL

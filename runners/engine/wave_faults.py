"""Telling a fault of the whole wave from a fault of one mailbox.

A secret reference that can't be read, a master login the server refuses, a server that refuses
connections: each would fail every mailbox of the wave one by one, with the same line each time.
When the first few mailboxes meet the very same such fault and no mailbox has reached its servers
yet, it is the wave's: the run stops (``cutover run`` exits 2 with one line) and the mailboxes are
left as they were. A fault worth retrying (a refused connection) counts once a mailbox has given up
on it: a server restarting as the wave begins is waited for, not taken for the wave's fault.
"""

from __future__ import annotations

import threading

from runners.engine.resilience import NoProgress
from runners.errors import AuthError, ConnectError, MigrationError, SecretError

#: Mailboxes that must meet the same fault (and none get through) before it is the wave's.
FEW = 3


class WaveFault(MigrationError):
    """The wave was stopped because of a fault that is not any one mailbox's own."""


def wave_signature(exc: BaseException) -> str | None:
    """How a fault would read if it were the wave's, or None when it can only be the mailbox's own.

    The words leave out the user name, so the same fault reads the same for every mailbox.
    """
    if isinstance(exc, NoProgress):
        exc = exc.last
    if isinstance(exc, SecretError):
        return f"a secret can't be read: {exc}"
    if isinstance(exc, AuthError) and not exc.retryable:
        return f"{exc.server} refuses the login: {exc.server_text}"
    if isinstance(exc, ConnectError):
        return f"{exc.server} can't be reached ({exc.operation}): {exc.server_text}"
    return None


class WaveFaults:
    """Shared by the mailboxes of one run; thread-safe. ``reason`` says why the wave was stopped."""

    def __init__(self, stop: threading.Event | None = None, few: int = FEW) -> None:
        self.few = few
        #: Set when the wave must stop: the run's stop event, so every mailbox winds down as on a stop.
        self.stop = stop or threading.Event()
        self.reason: str | None = None
        self._signature: str | None = None
        self._lock = threading.Lock()
        self._reached = False
        self._seen: dict[str, set[str]] = {}
        self._given_up_on: set[str] = set()

    def reached(self) -> None:
        """A mailbox got through to its servers: from now on no fault is taken for the wave's."""
        self._reached = True

    def seen(self, mailbox: str, exc: BaseException, *, final: bool) -> None:
        """``mailbox`` met ``exc``; ``final`` when it gives up on it, not when it will retry."""
        signature = wave_signature(exc)
        if signature is None or self._reached:
            return
        with self._lock:
            if final:
                self._given_up_on.add(signature)
            elif signature not in self._given_up_on:
                return  # it may pass: count it once some mailbox has given up on it
            mailboxes = self._seen.setdefault(signature, set())
            mailboxes.add(mailbox)
            if len(mailboxes) >= self.few and self.reason is None:
                self.reason = (
                    f"stopped the wave: the first {len(mailboxes)} mailboxes all failed the same way, "
                    f"which is the wave's fault, not theirs: {signature}; no mailbox was marked failed"
                )
                self._signature = signature
                self.stop.set()

    def victims(self) -> set[str]:
        """Mailboxes that met the fault that stopped the wave."""
        with self._lock:
            return set(self._seen[self._signature]) if self._signature is not None else set()

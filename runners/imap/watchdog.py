"""Deadlines for blocking socket reads: one daemon thread shuts down a socket whose command runs too long.

A socket timeout only measures silence: a server that trickles one byte every 50 s never trips a
60 s timeout, and a thread blocked in ``recv`` can't be told to stop. Shutting the socket down from
another thread wakes that read at once (it sees the end of the stream), whatever it was waiting for.
The same lever stops every connection at once when the operator asks twice (``abort_all``).

Used by the IMAP wire and the POP3 source; the connection asks ``guard.fired`` / ``aborted`` to tell
its own hang-up from the server's.
"""

from __future__ import annotations

import socket
import threading
import time

_TICK = 0.25  # how often armed deadlines are looked at: a command overruns by at most this much


class Guard:
    """The deadline of one connection's current command (``arm`` … ``disarm``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None
        self.seconds = 0.0
        #: The deadline passed and the socket was shut down by us.
        self.fired = False

    @property
    def armed(self) -> bool:
        return self.deadline is not None

    def arm(self, seconds: float) -> None:
        # No notify: the watcher looks every _TICK anyway, and waking it on every command (10,000 a
        # mailbox of 5,000 messages) cost more CPU than the copy's own parsing.
        with _lock:
            self.seconds, self.deadline, self.fired = seconds, time.monotonic() + seconds, False

    def disarm(self) -> None:
        with _lock:
            self.deadline = None

    def release(self) -> None:
        """The connection is closed: forget it."""
        with _lock:
            self.deadline = None
            _live.pop(id(self), None)


_lock = threading.Lock()
_wake = threading.Condition(_lock)
_live: dict[int, Guard] = {}
_thread: threading.Thread | None = None
_aborted = threading.Event()


def guard(sock: socket.socket) -> Guard:
    """Watch ``sock`` (until ``Guard.release``); shut at once when the process is already aborting."""
    watched = Guard(sock)
    global _thread
    with _lock:
        _live[id(watched)] = watched
        if _thread is None:
            _thread = threading.Thread(target=_watch, name="socket-deadlines", daemon=True)
            _thread.start()
    if _aborted.is_set():
        _shut(sock)
    return watched


def abort_all() -> None:
    """Shut down every watched socket now, and every one opened from now on: blocked reads return."""
    _aborted.set()
    with _lock:
        socks = [g.sock for g in _live.values()]
    for sock in socks:
        _shut(sock)


def aborted() -> bool:
    """``abort_all`` was called: a read that failed now failed because we asked for it."""
    return _aborted.is_set()


def _watch() -> None:
    while True:
        with _lock:
            _wake.wait(_TICK)
            now = time.monotonic()
            expired = [g for g in _live.values() if g.deadline is not None and g.deadline <= now]
            for g in expired:
                g.deadline, g.fired = None, True
        for g in expired:
            _shut(g.sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to wake

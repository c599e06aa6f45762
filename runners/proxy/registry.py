"""The logged-in sessions, by backend and service: what the views count, and what a switch acts on.

On a switch, sessions already open stay where they are; with the plan's grace period set, those of the
users who moved are ended once it has passed, each with its protocol's polite farewell (IMAP
``* BYE``, POP3 ``-ERR [IN-USE]``) before both connections close. New sessions go to the new side:
that is the router's part.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from runners.proxy.contracts import Service

_FAREWELL = {
    Service.IMAP: b"* BYE [UNAVAILABLE] Your mailbox moved to another server; please reconnect.\r\n",
    Service.POP3: b"-ERR [IN-USE] Your mailbox moved to another server; please reconnect.\r\n",
}


class Session:
    """One logged-in session: who, where, and how to end it."""

    __slots__ = ("backend", "client", "service", "stop", "user", "writer")

    def __init__(
        self, service: Service, backend: str, user: str, client: str, writer: asyncio.StreamWriter
    ) -> None:
        self.service = service
        self.backend = backend
        self.user = user
        self.client = client
        self.writer = writer  # the client's side
        self.stop = asyncio.Event()

    def end(self) -> None:
        """Say goodbye to the client, then let the relay close both sides."""
        if self.stop.is_set():
            return
        farewell = _FAREWELL.get(self.service)
        if farewell is not None and not self.writer.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self.writer.write(farewell)
        self.stop.set()


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: set[Session] = set()
        self._counts: dict[tuple[Service, str], int] = {}

    def add(self, session: Session) -> None:
        self._sessions.add(session)
        key = (session.service, session.backend)
        self._counts[key] = self._counts.get(key, 0) + 1

    def remove(self, session: Session) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            key = (session.service, session.backend)
            self._counts[key] -= 1
            if not self._counts[key]:
                del self._counts[key]

    def counts(self) -> dict[tuple[Service, str], int]:
        """Open sessions per (service, backend name)."""
        return dict(self._counts)

    def sessions(self) -> list[Session]:
        return list(self._sessions)

    def end_moved(
        self,
        moved: Iterable[Session] | None = None,
        *,
        new_backend: Callable[[str], str | None],
        grace_seconds: float | None,
    ) -> list[Session]:
        """After a switch: the sessions whose user's backend is now another one. With a grace period,
        each is ended after it (unless it ended by itself first). Returns them."""
        candidates = list(self._sessions if moved is None else moved)
        out = [s for s in candidates if (b := new_backend(s.user)) is not None and b != s.backend]
        if grace_seconds is not None:
            loop = asyncio.get_running_loop()
            for session in out:
                loop.call_later(grace_seconds, session.end)
        return out

"""The logged-in sessions, by backend and service: what the views count, and what a switch acts on.

On a switch, sessions already open stay where they are; with the plan's grace period set, those of the
users who moved are ended once it has passed, each with its protocol's polite farewell (IMAP
``* BYE``, POP3 ``-ERR [IN-USE]``) before both connections close. New sessions go to the new side:
that is the router's part.

Sessions of one wave on one backend share one stop event (a switch moves a wave, not a user): the
relay watches one event per group instead of one per session, so an idle session costs no watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from runners.proxy.contracts import Service

FAREWELL = {
    Service.IMAP: b"* BYE [UNAVAILABLE] Your mailbox moved to another server; please reconnect.\r\n",
    Service.POP3: b"-ERR [IN-USE] Your mailbox moved to another server; please reconnect.\r\n",
}

#: (backend, wave or None for users of no wave): the sessions that move together.
_Group = tuple[str, str | None]


class Session:
    """One logged-in session: who, where, and how to end it."""

    __slots__ = ("backend", "client", "service", "stop", "transport", "user", "wave")

    def __init__(
        self,
        service: Service,
        backend: str,
        user: str,
        client: str,
        transport: asyncio.Transport,
        stop: asyncio.Event,
        wave: str | None = None,
    ) -> None:
        self.service = service
        self.backend = backend
        self.user = user
        self.client = client
        self.transport = transport  # the client's side
        self.stop = stop  # shared with the sessions of its group
        self.wave = wave

    def say_farewell(self) -> None:
        farewell = FAREWELL.get(self.service)
        if farewell is not None and not self.transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self.transport.write(farewell)


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: set[Session] = set()
        self._counts: dict[tuple[Service, str], int] = {}
        self._groups: dict[_Group, asyncio.Event] = {}

    def open(
        self,
        service: Service,
        backend: str,
        user: str,
        client: str,
        transport: asyncio.Transport,
        wave: str | None,
    ) -> Session:
        """Count a session that is starting its relay; its ``stop`` is its group's."""
        stop = self._groups.get((backend, wave))
        if stop is None:
            stop = self._groups[(backend, wave)] = asyncio.Event()
        session = Session(service, backend, user, client, transport, stop, wave)
        self._sessions.add(session)
        key = (service, backend)
        self._counts[key] = self._counts.get(key, 0) + 1
        return session

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

    def end_all(self) -> None:
        """The proxy stops: every relay closes both its sides."""
        for event in self._groups.values():
            event.set()
        self._groups.clear()

    def end_moved(
        self,
        moved: Iterable[Session] | None = None,
        *,
        new_backend: Callable[[str], str | None],
        grace_seconds: float | None,
    ) -> list[Session]:
        """After a switch: the sessions whose user's backend is now another one. With a grace period,
        their groups are ended after it (each session still open told goodbye first). Returns them."""
        candidates = list(self._sessions if moved is None else moved)
        out = [s for s in candidates if (b := new_backend(s.user)) is not None and b != s.backend]
        if grace_seconds is not None:
            loop = asyncio.get_running_loop()
            for group in {(s.backend, s.wave) for s in out}:
                event = self._groups.get(group)
                if event is not None:
                    loop.call_later(grace_seconds, self._end_group, group, event)
        return out

    def _end_group(self, group: _Group, stop: asyncio.Event) -> None:
        for session in self._sessions:
            if session.stop is stop:
                session.say_farewell()
        stop.set()
        if self._groups.get(group) is stop:
            del self._groups[group]  # sessions opened from now on get a fresh event

"""On-login waves' observer: a user of a wave marked ``start = "on-login"`` who logs in through the
proxy and is served by the legacy platform has their mailbox queued for the engine, once (the seed's
real-time migration: they keep working on the legacy while it copies, and move at the switch).

Users are matched by the plan's names for them: the mailbox's source login or its address, as the
route's user or as the login the legacy accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

from runners.plan.model import Plan
from runners.proxy.contracts import LoginEvent, Outcome, Password
from runners.proxy.store_writer import StoreWriter
from runners.state.proxy_rows import QueuedLogin

#: The backend name of the legacy platform in the proxy's routes.
LEGACY = "legacy"


class OnLoginObserver:
    def __init__(self, writer: StoreWriter, plan: Plan, already: Iterable[tuple[str, str]] = ()) -> None:
        """``already``: (wave, mailbox) pairs the store holds as queued (each is queued once)."""
        self.writer = writer
        self._mailboxes: dict[str, tuple[str, str]] = {}
        for entry in plan.mailboxes:
            if plan.starts_on_login(entry.wave):
                for name in (entry.source, entry.address):
                    if name:
                        self._mailboxes.setdefault(name.lower(), (entry.wave, entry.source))
        self._queued = set(already)

    @property
    def watching(self) -> bool:
        """Whether any wave of the plan starts on login (else this observer is not needed)."""
        return bool(self._mailboxes)

    async def login_finished(self, event: LoginEvent, password: Password | None) -> None:
        route = event.route
        if event.outcome is not Outcome.ACCEPTED or route is None or route.backend != LEGACY:
            return
        found = self._mailboxes.get(route.user.lower()) or self._mailboxes.get(route.backend_login.lower())
        if found is None or found in self._queued:
            return
        self._queued.add(found)
        wave, mailbox = found
        self.writer.add_queued(QueuedLogin(wave, mailbox, event.ts, str(event.service), event.client_address))

"""The login journal's observer: every login outcome through the proxy becomes a row of the store's
``proxy_logins`` (what triage and the proxy view show), appended to the store writer's next batch."""

from __future__ import annotations

from enum import StrEnum

from runners.proxy.contracts import DecidedBy, LoginEvent, Outcome, Password, Service
from runners.proxy.store_writer import StoreWriter
from runners.state.proxy_rows import LoginRow

#: Each enum member's text as a plain ``str`` (``str()`` of a member copies it at every login).
_TEXT: dict[StrEnum, str] = {member: str(member) for kind in (Service, DecidedBy, Outcome) for member in kind}


def login_row(event: LoginEvent) -> LoginRow:
    """The journal's row for one login (the route's user, or the login as typed when not routed)."""
    route = event.route
    text = _TEXT
    # Positional, and one test of the route: made for every login on the proxy's loop.
    if route is None:
        return LoginRow(event.ts, text[event.service], event.client_address, event.login, event.login, None, None,
                        None, None, text[event.outcome], event.detail)  # fmt: skip
    return LoginRow(event.ts, text[event.service], event.client_address, event.login, route.user, route.backend,
                    route.backend_login, text[route.decided_by], route.reason, text[event.outcome],
                    event.detail)  # fmt: skip


class JournalObserver:
    """Writes each login to the journal; costs the session one append, never a wait on the store."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    async def login_finished(self, event: LoginEvent, password: Password | None) -> None:
        self.writer.add_login(login_row(event))

"""The login journal's observer: every login outcome through the proxy becomes a row of the store's
``proxy_logins`` (what triage and the proxy view show), appended to the store writer's next batch."""

from __future__ import annotations

from runners.proxy.contracts import LoginEvent, Password
from runners.proxy.store_writer import StoreWriter
from runners.state.proxy_rows import LoginRow


def login_row(event: LoginEvent) -> LoginRow:
    """The journal's row for one login (the route's user, or the login as typed when not routed)."""
    route = event.route
    return LoginRow(
        ts=event.at.timestamp(),
        service=str(event.service),
        client=event.client_address,
        login=event.login,
        user=route.user if route is not None else event.login,
        backend=route.backend if route is not None else None,
        backend_login=route.backend_login if route is not None else None,
        decided_by=str(route.decided_by) if route is not None else None,
        reason=route.reason if route is not None else None,
        outcome=str(event.outcome),
        detail=event.detail,
    )


class JournalObserver:
    """Writes each login to the journal; costs the session one append, never a wait on the store."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    async def login_finished(self, event: LoginEvent, password: Password | None) -> None:
        self.writer.add_login(login_row(event))

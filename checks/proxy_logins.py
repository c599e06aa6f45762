"""What the helpdesk sees of a user's logins through the routing proxy: the last ones (time, service,
client address, backend, result in the backend's words) and the route they took, with the login the
route rewrote for the backend. Read from the store's login journal: the router's stored decision,
as the last routed login recorded it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runners.state.proxy_rows import LoginRow
from runners.state.store import StateStore

#: The logins the triage shows at most.
SHOWN = 10


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """The route of the user's last routed login."""

    backend: str
    backend_login: str
    decided_by: str
    reason: str
    at: float
    service: str


def proxy_logins(store: StateStore, names: Iterable[str], limit: int = SHOWN) -> tuple[LoginRow, ...]:
    """The newest logins of any of the user's names (the plan's source login, target, address), newest first."""
    found: dict[tuple[float, str, str, str], LoginRow] = {}
    for name in {n for n in names if n}:
        for row in store.proxy_logins(name, limit):
            found[(row.ts, row.service, row.client, row.login)] = row
    return tuple(sorted(found.values(), key=lambda r: r.ts, reverse=True)[:limit])


def last_route(logins: Iterable[LoginRow]) -> ProxyRoute | None:
    row = next((r for r in logins if r.backend is not None), None)
    if row is None or row.backend is None:
        return None
    return ProxyRoute(
        row.backend,
        row.backend_login or row.login,
        row.decided_by or "",
        row.reason or "",
        row.ts,
        row.service,
    )

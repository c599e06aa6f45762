"""What the helpdesk sees of a user's logins through the routing proxy: the last ones (time, service,
client address, backend, result in the backend's words) and the route they took, with the login the
route rewrote for the backend, read from the store's login journal; and, for a plan with a
``[proxy]``, where the router sends the user now (``live_route``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from runners.errors import MigrationError
from runners.plan.model import Plan
from runners.proxy.contracts import Route
from runners.proxy.directory_lookup import DirectoryLookup
from runners.proxy.router import PlanRouter
from runners.proxy.settings import backends
from runners.state.open_store import open_store, store_exists
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


@dataclass(frozen=True, slots=True)
class LiveRoute:
    """Where the proxy's router sends the user now, and the login each backend would be given."""

    route: Route
    logins: dict[str, str]


def live_route(plan: Plan, store: StateStore | None, login: str) -> LiveRoute:
    """Ask the plan's router now, as a login through the proxy would (store, directory, static,
    default). Blocking (the directory may be asked): run it off a UI's loop."""
    assert plan.proxy is not None
    routing = plan.proxy.routing
    directory = (
        DirectoryLookup(routing.directory, routing.attribute, routing.match)
        if routing.directory is not None
        else None
    )
    router = PlanRouter(plan, backends(plan.proxy), store, directory=directory)
    try:
        return LiveRoute(asyncio.run(router.route_user(login)), router.rewritten_logins(login))
    finally:
        if directory is not None:
            directory.close()


def route_now(plan: Plan, login: str) -> tuple[bool, str]:
    """The triage's live step: where the proxy sends ``login`` now, with the login rewritten for that
    backend (False with the reason when the router can't say)."""
    store = open_store(plan, read_only=True) if store_exists(plan) else None
    try:
        found = live_route(plan, store, login)
    except (MigrationError, OSError) as exc:
        return False, f"the router could not say: {exc}"
    finally:
        if store is not None:
            store.close()
    return True, route_words(found.route)


def route_words(route: Route) -> str:
    """``target as carol@tenant.example (decided by static: static override)``."""
    why = f": {route.reason}" if route.reason else ""
    return f"{route.backend} as {route.backend_login} (decided by {route.decided_by}{why})"

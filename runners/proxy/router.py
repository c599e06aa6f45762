"""Where each user goes: the store, then the directory, then the plan's static overrides, then the
default backend (the issue's order).

* The store: a user of the plan whose wave is switched (or settled, closed) goes to ``target``; one
  whose wave was rolled back goes to ``legacy``. A wave still copying decides nothing: the next
  sources are asked. The switched waves are kept in memory and re-read only when the store's switch
  marker changes (``refresh``, polled about once a second by the server), so a login never queries
  the store.
* The directory: the routing attribute of the user's entry (``[proxy.routing] values`` maps its
  value to a backend). Answers are cached for ``cache_seconds``; a switch drops them all at once.
  A directory that can't answer decides nothing (the reason says so) rather than failing the login.
* Static overrides by login, then the default backend.

The login the backend is given is rewritten for that backend (``login_rewrite``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from runners.errors import ProtocolError
from runners.plan.model import MailboxEntry, Plan
from runners.plan.proxy_model import RoutingOption
from runners.proxy.contracts import DecidedBy, ProxyBackend, Route
from runners.proxy.directory_lookup import DirectoryLookup
from runners.proxy.login_rewrite import rewrite_login
from runners.state.store import StateStore

_AFTER_SWITCH = ("switched", "settled", "closed")
#: Routes kept at most (``PlanRouter._routes``), and only for logins up to 256 characters: 320 bytes
#: each measured for the usual ones (6.4 MB); about 20 MB estimated with every login at full length.
_ROUTES_KEPT = 20_000
_KEPT_LOGIN_CHARS = 256


class PlanRouter:
    """The proxy's ``Router`` for one plan."""

    def __init__(
        self,
        plan: Plan,
        backends: Mapping[str, ProxyBackend],
        store: StateStore | None,
        *,
        directory: DirectoryLookup | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert plan.proxy is not None
        self.plan = plan
        self.backends = backends
        self.store = store
        self.directory = directory
        self._routing: RoutingOption = plan.proxy.routing
        self._cache_seconds = plan.proxy.cache_seconds
        self._clock = clock
        self._entries = _entries_by_login(plan.mailboxes)
        #: wave -> (backend, reason), for the waves the store decides.
        self._store_waves: dict[str, tuple[str, str]] = {}
        self._marker: tuple[int, int] | None = None
        #: login (lower case) -> (expires, directory value or None, reason)
        self._directory_cache: dict[str, tuple[float, str | None, str]] = {}
        #: login as typed -> its route, where no directory takes part: the same until ``refresh``
        #: sees the store move (making them was 14 k of an IMAP session's 525 k instructions, callgrind).
        self._routes: dict[str, Route] = {}
        self.refresh()

    # -- the Router protocol -------------------------------------------------------------------

    async def route_user(self, login: str) -> Route:
        route = self._routes.get(login)
        if route is not None:
            return route
        return await self._route(login, login.strip().lower())

    async def route_recipient(self, address: str) -> Route | None:
        return await self._route(address, address.strip().lower())

    # -- for the server and the views ----------------------------------------------------------

    def refresh(self) -> frozenset[str]:
        """Re-read the switched waves if the store's marker moved; drop every cached decision then.
        Returns the waves whose backend changed (empty when nothing did)."""
        if self.store is None:
            return frozenset()
        marker = self.store.switch_marker()
        if marker == self._marker:
            return frozenset()
        waves = self._read_store_waves()  # if this fails, the marker is not taken: the next look reads again
        self._marker = marker
        before = self._store_waves
        self._store_waves = waves
        self._directory_cache.clear()
        self._routes.clear()
        changed = {
            w for w in before.keys() | self._store_waves.keys() if before.get(w) != self._store_waves.get(w)
        }
        return frozenset(changed)

    def store_backend(self, login: str) -> str | None:
        """The backend the store decides for ``login`` (None: the store doesn't decide)."""
        entry = self._entries.get(login.strip().lower())
        if entry is None:
            return None
        decided = self._store_waves.get(entry.wave)
        return decided[0] if decided else None

    def wave_of(self, login: str) -> str | None:
        entry = self._entries.get(login.strip().lower())
        return entry.wave if entry else None

    def rewritten_logins(self, login: str) -> dict[str, str]:
        """The login each backend would be given (the triage view and ``cutover proxy route``)."""
        return {name: rewrite_login(login, backend) for name, backend in self.backends.items()}

    # -- internals -----------------------------------------------------------------------------

    async def _route(self, login: str, key: str) -> Route:
        entry = self._entries.get(key)
        user = entry.source if entry is not None else login
        if entry is not None and (decided := self._store_waves.get(entry.wave)) is not None:
            return self._keep(login, self._make(login, user, decided[0], DecidedBy.STORE, decided[1]))
        if self.directory is not None:
            value, reason = await self._directory_value(key)
            backend = self._routing.values.get(value) if value is not None else None
            if backend is not None:
                return self._make(login, user, backend, DecidedBy.DIRECTORY, reason)
        if (backend := self._routing.static.get(key)) is not None:
            route = self._make(login, user, backend, DecidedBy.STATIC, "static override in the plan")
        else:
            reason = "the plan's default backend"
            if entry is not None:
                reason = f"wave {entry.wave} not switched; {reason}"
            route = self._make(login, user, self._routing.default, DecidedBy.DEFAULT, reason)
        # With a directory, its answer may change when its cache expires: those routes are not kept.
        return route if self.directory is not None else self._keep(login, route)

    def _keep(self, login: str, route: Route) -> Route:
        if len(login) > _KEPT_LOGIN_CHARS:  # a made-up login may be as long as a command line
            return route
        if len(self._routes) >= _ROUTES_KEPT:  # a flood of made-up logins must not grow it without end
            self._routes.clear()
        self._routes[login] = route
        return route

    def _make(self, login: str, user: str, backend: str, by: DecidedBy, reason: str) -> Route:
        known = self.backends.get(backend)
        rewritten = rewrite_login(login, known) if known is not None else login
        return Route(user=user, backend=backend, backend_login=rewritten, decided_by=by, reason=reason)

    async def _directory_value(self, key: str) -> tuple[str | None, str]:
        now = self._clock()
        cached = self._directory_cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        assert self.directory is not None
        attribute = self.directory.attribute
        try:
            values = await asyncio.to_thread(self.directory.values_of, key)
        except ProtocolError as exc:
            # Not cached: the next login asks again.
            return None, f"directory unavailable: {exc}"
        value = next((v for v in values if v in self._routing.values), None)
        reason = f"{attribute}={value}" if value is not None else f"no {attribute} the plan routes"
        self._directory_cache[key] = (now + self._cache_seconds, value, reason)
        return value, reason

    def _read_store_waves(self) -> dict[str, tuple[str, str]]:
        assert self.store is not None
        out: dict[str, tuple[str, str]] = {}
        for wave in self.plan.waves:
            done = [s for s in self.store.steps_done(wave) if s in (*_AFTER_SWITCH, "rolled-back")]
            if not done:
                continue
            if done[-1] == "rolled-back":
                out[wave] = ("legacy", f"wave {wave} rolled back")
            else:
                out[wave] = ("target", f"wave {wave} {done[-1]}")
        return out


def _entries_by_login(entries: tuple[MailboxEntry, ...]) -> dict[str, MailboxEntry]:
    """Every spelling a client may log in with: the source login first, then the address and target."""
    out: dict[str, MailboxEntry] = {}
    for field_name in ("source", "address", "target"):
        for entry in entries:
            value = getattr(entry, field_name)
            if value:
                out.setdefault(value.strip().lower(), entry)
    return out

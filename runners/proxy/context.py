"""What every listener of the proxy shares: the router, the backends, the limits, the sessions, the
observers of logins, the relay, and the TLS contexts. One per running proxy (``server.build_context``)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runners.plan.proxy_model import ProxyOptions
from runners.proxy.backend_connect import BackendTls
from runners.proxy.contracts import LoginEvent, LoginObserver, Password, ProxyBackend, Relay
from runners.proxy.deadlines import SessionDeadlines
from runners.proxy.limits import Limits
from runners.proxy.registry import SessionRegistry
from runners.proxy.router import PlanRouter

log = logging.getLogger("cutover.proxy")


@dataclass(slots=True)
class ProxyContext:
    options: ProxyOptions
    router: PlanRouter
    backends: Mapping[str, ProxyBackend]
    limits: Limits
    registry: SessionRegistry
    observers: Sequence[LoginObserver]
    relay: Relay
    client_tls: ssl.SSLContext | None
    backend_tls: BackendTls
    deadlines: SessionDeadlines

    async def tell(self, event: LoginEvent, password: Password | None = None) -> None:
        """Tell every observer of a login's outcome (the password only when the backend accepted it)."""
        shown = password if event.outcome == "accepted" else None
        for observer in self.observers:
            try:
                await observer.login_finished(event, shown)
            except Exception as exc:  # an observer's bug must not end the session
                log.warning("login observer %s failed: %s", type(observer).__name__, type(exc).__name__)

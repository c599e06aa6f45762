"""Helpers for the cockpit's tests: a poll done by hand, so each test controls time."""

from __future__ import annotations

from cockpit.app import CockpitApp
from runners.state.read_models.snapshot import take
from runners.state.store import StateStore


def feed(app: CockpitApp) -> None:
    """One poll, read with what the visible view asks for (as the poller does twice a second)."""
    store = StateStore(app.plan.state_db)
    try:
        app.apply(take(store, app.plan, query=app.current_query()))
    finally:
        store.close()

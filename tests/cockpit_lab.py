"""Helpers for the cockpit's tests: a poll done by hand, so each test controls time."""

from __future__ import annotations

from textual.pilot import Pilot

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


async def open_mailbox(app: CockpitApp, pilot: Pilot[None], source: str) -> None:
    """Enter on ``source``'s mailbox, with a poll before and one after (the view's own rows)."""
    feed(app)
    app.open_mailbox(source)
    await pilot.pause()
    feed(app)
    await pilot.pause()

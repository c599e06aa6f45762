"""Which mailboxes a run of an on-login wave copies: those its users' logins through the routing
proxy queued (``[[waves]] start = "on-login"``). A queued mailbox stays queued, so each later run of
the wave is a delta pass for it, as for any wave; mailboxes whose users have not logged in wait."""

from __future__ import annotations

from collections.abc import Sequence

from runners.errors import MigrationError
from runners.plan.model import MailboxEntry
from runners.state.store import StateStore


def queued_only(store: StateStore, wave: str, entries: Sequence[MailboxEntry]) -> list[MailboxEntry]:
    """``entries`` that a login queued; none queued yet is an error that says so."""
    queued = store.queued_by_login(wave).get(wave, set())
    chosen = [e for e in entries if e.source in queued]
    if not chosen:
        raise MigrationError(
            f"wave {wave!r} starts on login: none of its {len(entries)} mailboxes is queued yet (a mailbox is "
            "queued when its user first logs in through the proxy)"
        )
    return chosen

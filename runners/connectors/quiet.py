"""Waiting for a target folder to stop growing, before an item a dead client sent is called lost.

A server finishes a command it received whole even when its client is gone: an APPEND (IMAP) or a
create (EWS, Graph) sent just before a crash can be saved after the next holder began looking for
it. So the recoveries watch a figure of the folder that grows with each saved item (IMAP's UIDNEXT,
an Exchange folder's item count) until it stays the same for a while, then look again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from runners.connectors.base import Uncertain

#: A recovery's look: for each uncertain intent, its item's id on the target, or None; never one of
#: the ids given as claimed.
Match = Callable[[Sequence[Uncertain], set[str]], list[str | None]]

#: Before an item is called lost, the folder's figure stays the same this long...
QUIET_SECONDS = 2.0
#: ...waiting at most this long (a live INBOX may keep receiving mail).
SETTLE_SECONDS = 30.0


def wait_until_still(read: Callable[[], int | None]) -> None:
    """Until ``read()`` gave the same figure ``QUIET_SECONDS`` apart (``SETTLE_SECONDS`` at most).

    A None (the service could not say this time) is never taken for stillness: the wait goes on,
    to the limit if the service never answers, since ending it early could copy a message twice."""
    deadline = time.monotonic() + SETTLE_SECONDS
    seen = read()
    while time.monotonic() < deadline:
        time.sleep(QUIET_SECONDS)
        now = read()
        if now is not None and now == seen:
            return
        seen = now


def find_settling(
    match: Match,
    figure: Callable[[], int | None],
    uncertain: Sequence[Uncertain],
    claimed: set[str],
    *,
    after_crash: bool,
) -> list[str | None]:
    """``match`` once; after a crash, the intents not found are looked for again once the folder's
    ``figure`` stayed still (``wait_until_still``): what a dead client sent may be saved only after
    the first look.

    The caller's own intents (a connection of its own lost mid-pass) are not waited for: on a flaky
    link every reconnect would spend a window polling through the faults too, and with that wait 2
    runs in 25 of the flaky-network test ended with a mailbox unfinished (532 of 1,500 copied). The
    server saving that connection's last request late stays a gap."""
    found = match(uncertain, claimed)
    missing = [n for n, item_id in enumerate(found) if item_id is None]
    if not missing or not after_crash:
        return found
    wait_until_still(figure)
    taken = claimed | {item_id for item_id in found if item_id is not None}
    for n, item_id in zip(missing, match([uncertain[n] for n in missing], taken), strict=True):
        found[n] = item_id
    return found

"""A window of the mailbox list in the viewer's order, read by keyset (an anchor mailbox), never by
OFFSET: the cockpit's mailboxes view holds a few screens of a fleet of 100,000 and moves the window
as the cursor nears its edges, so each read costs the window, not the position in the fleet.

``MailboxQuery.start`` is the window's first mailbox (None: the first of all); with ``back`` > 0 the
window starts that many rows before it instead (``start`` None: before the end, so the last rows).
In the mailbox order the anchor is the source's unique index; the other orders (failed, progress)
compare against the anchor's own values, read by a subquery on that index.

The planned mailboxes no run has touched yet have no row here; ``snapshot._rows`` merges them into
each window, in the same order, forwards and backwards alike.
"""

from __future__ import annotations

from dataclasses import dataclass

_PROGRESS = "messages_done * 1.0 / CASE WHEN messages_total > 0 THEN messages_total ELSE 1 END"
#: (ORDER BY forwards, ORDER BY backwards, the sort value as an SQL expression or None for the source).
_KEYS: dict[str, tuple[str, str, str | None]] = {
    "source": ("source", "source DESC", None),
    "mailbox": ("source", "source DESC", None),
    "failed": ("failed DESC, source", "failed, source DESC", "failed"),
    "progress": (f"{_PROGRESS} DESC, source", f"{_PROGRESS}, source DESC", _PROGRESS),
}


@dataclass(frozen=True, slots=True)
class Keyset:
    """The SQL that puts a window at its anchor: ``after`` rows from the anchor on (inclusive), in
    ``order``; ``before`` rows before it, nearest first, in ``reverse``."""

    order: str
    reverse: str
    after: str
    before: str
    #: How many times ``after`` and ``before`` each take the anchor's source as a parameter.
    params_per_anchor: int

    def anchored(self, start: str) -> list[object]:
        return [start] * self.params_per_anchor


def keyset(order: str) -> Keyset:
    forwards, backwards, value = _KEYS[order]
    if value is None:
        return Keyset(forwards, backwards, "source >= ?", "source < ?", 1)
    # A mailbox the store has no row for yet (a planned one: snapshot._rows) is pending with nothing
    # counted: its sort value is 0.
    anchor = f"COALESCE((SELECT {value} FROM mailboxes WHERE source = ?), 0)"
    return Keyset(
        forwards,
        backwards,
        f"({value} < {anchor} OR ({value} = {anchor} AND source >= ?))",
        f"({value} > {anchor} OR ({value} = {anchor} AND source < ?))",
        3,
    )

"""The mailbox search's SQL: a substring of the source, the target or the state, in any case, its text
taken literally (LIKE's ``%`` and ``_`` too).

A pass over 100,000 mailboxes for a substring costs 150–250 ms, and a search that matches a few
mailboxes finds its first window only at the end of that pass (cockpit_bench.py's "apply filter").
So each engine answers from a trigram index of the sources and targets:

* PostgreSQL: pg_trgm's GIN index ``mailboxes_text`` (schema_pg.sql), which ``LOWER(...) LIKE`` uses;
  the planner weighs it against the ordered scan that stops at the window's end (a needle that
  matches most of the fleet). Without the extension (no right to create it) the same SQL scans.
* SQLite: the FTS5 trigram table ``mailboxes_text`` (schema.sql, kept by triggers), whose phrase
  query is a substring test; LIKE then keeps the result exactly what it was (FTS folds more case).
  SQLite's planner can't tell a needle of 10 matches from one of 100,000, so a probe counts at most
  ``DENSE`` matches first: as many, and the ordered scan reaches a window's worth of them at once.
  A needle shorter than a trigram, or one found in a state's name, scans as before.

The state is one of a few names: which contain the needle is known here, so the SQL tests
``state IN (...)`` instead of searching each row's state.
"""

from __future__ import annotations

from collections.abc import Callable

from runners.state.statuses import MailboxState

#: From this many trigram matches on, SQLite's search takes the ordered scan (it finds them quickly).
DENSE = 5_000
#: The FTS5 trigram tokenizer indexes no needle shorter than this.
TRIGRAM = 3


def states_with(needle: str) -> list[str]:
    """The mailbox states whose name contains ``needle`` (lowered)."""
    return [state.value for state in MailboxState if needle in state.value]


def like_pattern(needle: str) -> str:
    """``needle`` as a LIKE pattern matching it literally anywhere (backslash escapes)."""
    literal = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{literal}%"


def search_clause(
    text: str, dialect: str, trigram_matches: Callable[[str, int], int | None]
) -> tuple[str, list[object]]:
    """The WHERE term for a search of ``text`` and its parameters. ``trigram_matches(phrase, limit)``
    counts SQLite's FTS matches of ``phrase`` up to ``limit`` (None: the store has no such table)."""
    needle = text.lower()
    pattern = like_pattern(needle)
    states = states_with(needle)
    in_states = f" OR state IN ({', '.join('?' * len(states))})" if states else ""
    if dialect == "postgresql":  # LIKE's default escape there is the backslash
        return f"(LOWER(source) LIKE ? OR LOWER(target) LIKE ?{in_states})", [pattern, pattern, *states]
    like = "LIKE ? ESCAPE '\\'"  # SQLite's LIKE ignores ASCII case and lowers nothing per row
    if len(needle) >= TRIGRAM and not states:
        phrase = '"' + needle.replace('"', '""') + '"'
        found = trigram_matches(phrase, DENSE)
        if found is not None and found < DENSE:
            return (
                f"(id IN (SELECT rowid FROM mailboxes_text WHERE mailboxes_text MATCH ?) "
                f"AND (source {like} OR target {like}))",
                [phrase, pattern, pattern],
            )
    return f"(source {like} OR target {like}{in_states})", [pattern, pattern, *states]

"""The special uses of RFC 6154, the one list: the IMAP connectors read LIST attributes through it,
the folder mapping maps by it, and the plan's ``[folders] special`` keys derive from it. It sits
below the plan and the folder mapping, which both need it."""

from __future__ import annotations

from collections.abc import Iterable

#: The special uses (RFC 6154) a folder is mapped by, source to target, spelled as RFC 6154 does. The one
#: list: the IMAP connectors and the plan's ``[folders] special`` keys derive from it, and the name
#: table below has names for each (a test holds it to that).
SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")
#: RFC 6154's views of other folders' messages (Gmail's All Mail and Starred): recorded, never mapped,
#: since copying into a target's view would be wrong.
SPECIAL_VIEWS = ("\\All", "\\Flagged")
_BY_LOWER = {use.lower(): use for use in (*SPECIAL_USES, *SPECIAL_VIEWS)}

#: Plan keys of ``[folders] special``: ``sent`` → ``\\Sent``.
SPECIAL_KEYS = {use[1:].lower(): use for use in SPECIAL_USES}


def special_uses_in(attributes: Iterable[str]) -> list[str]:
    """The special uses among a LIST reply's attributes, in RFC 6154's spelling whatever the server's
    case: folder uses (``SPECIAL_USES``) first, then views (``SPECIAL_VIEWS``)."""
    found = [_BY_LOWER[a.lower()] for a in attributes if a.lower() in _BY_LOWER]
    return sorted(found, key=lambda use: use not in SPECIAL_USES)

"""What a pass's copies go without, recorded: a message is copied with its flags, or the run says
which flag it went without and why (a warning event a folder, naming the messages).

Two places lose a flag no server would ever show: a source listing that finds one without a name
(``base.NotingSource``: a Maildir keyword letter that ``dovecot-keywords`` doesn't name), and an IMAP
target that can't be given one (a keyword that isn't an atom, a ``\\`` flag IMAP doesn't define).
"""

from __future__ import annotations

from collections.abc import Sequence

from runners.connectors.base import LeftOff
from runners.imap.parse import compress_uids
from runners.model import MessageMeta, settable_flags

#: Session state, never stored: its absence is no loss.
_SESSION_ONLY = "\\recent"
#: UIDs an event names before it says how many more.
_SHOWN_UIDS = 200


def among(notes: Sequence[LeftOff], todo: Sequence[MessageMeta]) -> list[LeftOff]:
    """``notes`` narrowed to the messages this pass copies (a later pass doesn't repeat them)."""
    if not notes or not todo:
        return []
    copying = {m.uid for m in todo}
    out: list[LeftOff] = []
    for note in notes:
        uids = tuple(u for u in note.uids if u in copying)
        if uids:
            out.append(LeftOff(note.what, note.why, uids))
    return out


def unsettable(todo: Sequence[MessageMeta]) -> list[LeftOff]:
    """The flags of ``todo`` an IMAP APPEND can't give (``settable_flags``), each with its messages."""
    lost_by_flags: dict[tuple[str, ...], tuple[str, ...]] = {}
    by_flag: dict[str, list[int]] = {}
    for meta in todo:
        flags = meta.flags
        if not flags:
            continue
        lost = lost_by_flags.get(flags)
        if lost is None:  # messages share a few flag sets: each is looked at once
            lost = lost_by_flags[flags] = tuple(
                f for f in flags if f.lower() != _SESSION_ONLY and not settable_flags((f,))
            )
        for flag in lost:
            by_flag.setdefault(flag, []).append(meta.uid)
    return [LeftOff(_named(flag), _why(flag), tuple(uids)) for flag, uids in sorted(by_flag.items())]


def describe(note: LeftOff) -> str:
    """The event's text: how many, what, why, and which UIDs."""
    shown = note.uids[:_SHOWN_UIDS]
    more = len(note.uids) - len(shown)
    uids = compress_uids(sorted(shown)).decode("ascii") + (f" and {more} more" if more else "")
    return f"the copies of {len(note.uids)} message(s) go without {note.what}: {note.why}; UIDs {uids}"


def _named(flag: str) -> str:
    return f"the flag {flag!r}" if flag.startswith("\\") else f"the keyword {flag!r}"


def _why(flag: str) -> str:
    if flag.startswith("\\"):
        return "IMAP defines no such system flag, so no IMAP server takes it"
    return (
        'an IMAP keyword is an atom (printable ASCII without space or ( ) { % * " \\ ]), '
        "so no IMAP server takes it"
    )

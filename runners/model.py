"""Plain value types shared by connectors, the engine and the state store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

#: System flags that IMAP APPEND accepts. ``\\Recent`` is session-only and never copied.
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


def settable_flags(flags: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The flags an IMAP APPEND or STORE can give: system flags in their proper case and keyword
    atoms. Others (``\\Recent``, an unknown ``\\`` flag, a keyword that isn't an atom) can't be set."""
    keep: list[str] = []
    for flag in flags:
        if flag.startswith("\\"):
            proper = "\\" + flag[1:].capitalize()
            if proper in SYSTEM_FLAGS:
                keep.append(proper)
        elif flag and all(33 <= ord(c) < 127 and c not in '(){%*"\\]' for c in flag):
            keep.append(flag)
    return tuple(keep)


def storable_keyword(name: str) -> bool:
    """Whether a keyword read from a file (a Maildir's keyword store) can be one: the ledger keeps a
    message's flags as one space-separated text, and IMAP has no way to write a space or a control
    character in a flag. Such a name is a tool's or a hand's, never a client's."""
    return bool(name) and all(ord(c) > 32 and ord(c) != 127 for c in name)


def flag_text(flags: tuple[str, ...]) -> str:
    """Flags as the ledger stores them: order-independent, so a server's reordering isn't a change."""
    return " ".join(sorted(flags)) if len(flags) > 1 else (flags[0] if flags else "")


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """One folder as the source lists it.

    ``path`` is the folder's hierarchy as Unicode segments with the namespace prefix removed
    (``("Archive", "2023")``); ``raw_name`` is the exact wire name to SELECT on the source.
    """

    raw_name: str
    path: tuple[str, ...]
    separator: str | None
    special_use: str | None = None  # "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", ...
    selectable: bool = True

    @property
    def display(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True, slots=True)
class FolderState:
    """What tells whether a folder changed since the last pass."""

    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int | None = None


@dataclass(frozen=True, slots=True)
class ListedItem:
    """One item of a target folder as verification lists it."""

    size: int
    #: The arrival date as the target keeps it (an IMAP INTERNALDATE as written), when it says.
    internaldate: str | None
    #: The flags the target keeps (``\\Recent`` left out); None when its listing doesn't say.
    flags: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """A source message before its body is fetched.

    ``key`` identifies the message inside one folder and one UIDVALIDITY: the IMAP UID as
    decimal text, the POP3 UIDL, or the Maildir base name. ``uid`` is numeric for IMAP (and a
    position for POP3/Maildir) and only orders messages. ``internaldate`` is the IMAP
    date-time string exactly as APPEND takes it (``"17-Jul-1996 02:44:25 -0700"``).
    """

    key: str
    uid: int
    size: int
    flags: tuple[str, ...] = ()
    internaldate: str | None = None


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    meta: MessageMeta
    body: bytes


@dataclass(frozen=True, slots=True)
class FetchFailure:
    """The source could not deliver this message; ``reason`` is the server's words or ours."""

    meta: MessageMeta
    reason: str


@dataclass(frozen=True, slots=True)
class AppendItem:
    body: bytes
    flags: tuple[str, ...]
    internaldate: str | None
    #: The message's recovery key (``runners.engine.reconcile.item_key``): a keyed target stores it on
    #: the item so that an APPEND whose outcome a crash lost can be found again. IMAP ignores it.
    key: str = ""


@dataclass(slots=True)
class AppendOutcome:
    """Result of appending one message: the target's id for the new item (None when the server
    doesn't say, e.g. IMAP without UIDPLUS) or an error."""

    item_id: str | None = None
    error: str | None = None
    code: str | None = None
    fatal_for_mailbox: bool = False


@dataclass(frozen=True, slots=True)
class TargetCapabilities:
    """What a target adapter can do, asked by the engine instead of assumed."""

    #: The target stores a message's bytes exactly as sent (IMAP), so SHA-256 proves a copy. A target
    #: that re-renders MIME (Exchange) can only be checked by what it keeps (count, size, key).
    keeps_bytes: bool
    #: Most messages and bytes one append request may carry (None: the plan's batch settings rule).
    batch_messages: int | None
    batch_bytes: int | None
    #: Flags of an item already on the target can be replaced (flag sync on delta passes).
    flags_mutable: bool
    #: Concurrent sessions one mailbox tolerates; the engine opens at most this many per mailbox.
    connections_per_mailbox: int
    #: Batches fetched ahead of the one being appended: 2 (one handed over, one being fetched) or 1
    #: (the next is fetched only once the last was taken: less memory where a batch is large).
    fetch_ahead: int = 2
    #: Flags go over as IMAP flags: only system flags and keyword atoms (``settable_flags``); the
    #: engine records the messages whose other flags their copies go without.
    imap_flags: bool = False


@dataclass(frozen=True, slots=True)
class TargetLayout:
    """How the target names folders: what the folder plan needs to turn source paths into target names.

    ``special`` maps a special use to the existing folder's path joined with ``/``:
    ``{"\\Sent": "Sent Items"}``.
    """

    separator: str
    #: Personal namespace prefix that new folders go under ("" on Dovecot, "INBOX." on Courier).
    prefix: str
    special: dict[str, str] = field(default_factory=dict)
    #: Top-level names the target keeps for itself (casefolded) → why (Exchange: Calendar, Outbox...).
    reserved: dict[str, str] = field(default_factory=dict)
    #: Sibling names that differ only in case are the same folder on the target (Exchange).
    case_insensitive: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "separator": self.separator,
                "prefix": self.prefix,
                "special": self.special,
                "reserved": self.reserved,
                "case_insensitive": self.case_insensitive,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TargetLayout:
        data = json.loads(text)
        return cls(
            separator=str(data["separator"]),
            prefix=str(data["prefix"]),
            special={str(k): str(v) for k, v in data.get("special", {}).items()},
            reserved={str(k): str(v) for k, v in data.get("reserved", {}).items()},
            case_insensitive=bool(data.get("case_insensitive", False)),
        )


@dataclass(slots=True)
class FolderCounts:
    messages: int = 0
    bytes: int = 0
    extra: dict[str, int] = field(default_factory=dict)

"""The interfaces the engine drives. Each protocol adapter implements one of them, and
``runners.adapters`` names which adapter serves which plan ``type``.

A session is used by one thread at a time. Every method raises a ``runners.errors.ProtocolError``
subclass on failure, keeping the server's own words.

Targets speak of folders and items by opaque strings: a folder is the name the folder plan gave
it (``FolderMapping.target_wire``), an item is whatever id the adapter hands back from ``append``
(an IMAP UID as decimal text). The engine and the ledger store both as text and never parse them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from runners.model import (
    AppendItem,
    AppendOutcome,
    FetchedMessage,
    FetchFailure,
    FolderInfo,
    FolderState,
    ListedItem,
    MessageMeta,
    TargetCapabilities,
    TargetLayout,
)

if TYPE_CHECKING:  # what a target keeps is read by verification only: email's parser stays unloaded for a run
    from runners.kept import KeptItem


class SourceSession(Protocol):
    """Reads a mailbox. Never changes it (IMAP folders are opened read-only, POP3 never DELEs)."""

    #: Stable description of where the data comes from, e.g. ``imap://127.0.0.1:10143``.
    server: str

    def list_folders(self) -> list[FolderInfo]:
        """Every folder, hierarchy and special-use included. POP3 lists one: INBOX."""
        ...

    def folder_states(self, folders: Sequence[FolderInfo]) -> dict[str, FolderState | Exception]:
        """Cheap change detection for many folders at once, keyed by ``raw_name``.

        A folder that can't be examined maps to the exception instead of a state.
        """
        ...

    def list_messages(self, folder: FolderInfo) -> tuple[FolderState, list[MessageMeta]]:
        """Open the folder read-only and list every message's metadata (no bodies)."""
        ...

    def fetch(
        self, folder: FolderInfo, metas: Sequence[MessageMeta]
    ) -> Iterator[FetchedMessage | FetchFailure]:
        """Fetch bodies of ``metas`` (already listed in this folder), yielding as they arrive.

        Every requested message is yielded exactly once, either fetched or as a failure.
        """
        ...

    def isolate(self, uids: Collection[int]) -> None:
        """Fetch these messages each on its own, after the others, in this session's ``fetch`` calls.

        How the engine narrows a batch that broke the connection down to the message at fault: one
        that breaks it again does so alone, and the rest of its batch is not held up.
        """
        ...

    def close(self) -> None: ...

    def header_block(
        self, *, folder: str, uid: int, key: str, uidvalidity: int, fields: Sequence[str]
    ) -> bytes | str:
        """The header block of one message as the ledger names it (``folder``: its name on the source;
        ``key``: the ledger's key; ``uidvalidity`` 0: don't check), holding at least ``fields``; or,
        as text, why it can't be read. Changes nothing on the source (no \\Seen, no DELE)."""
        ...


@runtime_checkable
class NotingSource(Protocol):
    """A ``SourceSession`` whose listing can find what no copy will carry (a Maildir keyword letter
    without a name): the engine asks with isinstance after each listing and records each note."""

    def listing_notes(self, folder: FolderInfo) -> list[LeftOff]:
        """What the last ``list_messages`` of ``folder`` found and no copy will carry."""
        ...


@dataclass(frozen=True, slots=True)
class LeftOff:
    """Something messages carry that their copies go without, and why: recorded, never silent."""

    #: What is left off, as the run's event names it: ``keyword 'Wichtig ä'``.
    what: str
    why: str
    #: Source UIDs of the messages that carry it.
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Uncertain:
    """An intent whose APPEND may or may not have landed (the run died between send and record)."""

    uidvalidity: int
    src_key: str
    sha256: bytes | None
    #: What ``Recovery.mark`` returned before the APPEND (IMAP: the folder's UIDNEXT), or None.
    mark: str | None
    #: The key a keyed target stored on the item (``AppendItem.key``).
    item_key: str


class Recovery(Protocol):
    """How a target finds again the items whose APPEND outcome a crash lost.

    The engine drives every target the same way: before an APPEND it records each message as
    *pending* with ``mark``; after it, the outcome. On the next pass it hands the pending messages to
    ``find``, records the found ones as copied and copies the rest again.
    """

    #: Whether ``find`` looks items up by the key each APPEND carries (``AppendItem.item_key``);
    #: where it doesn't, the engine leaves the key empty.
    keyed: bool

    def mark(self, folder: str) -> str | None:
        """Taken once before a folder's first APPEND of a pass; stored on every intent."""
        ...

    def advance(self, mark: str | None, outcomes: Sequence[AppendOutcome]) -> str | None:
        """The mark for the next batch, given what the last one returned (saves a round trip)."""
        ...

    def find(
        self, folder: str, uncertain: Sequence[Uncertain], claimed: set[str], *, after_crash: bool = False
    ) -> list[str | None]:
        """For each uncertain intent, the id of the item that holds it, or None if it never landed.

        ``claimed`` are item ids the ledger already maps to other messages: never one of those.
        ``after_crash``: some were sent by a client that died (an earlier run, or a holder of this
        run whose mailbox was taken over); its last request may still be carried out by the service
        (it had all of it), so an item may land after the first look.
        """
        ...


class TargetSession(Protocol):
    """Writes into a mailbox."""

    server: str

    @property
    def capabilities(self) -> TargetCapabilities:
        """What the engine may ask of this target (the same as its registry entry declares)."""
        ...

    @property
    def recovery(self) -> Recovery:
        """How this target finds again the items a crash left uncertain."""
        ...

    def layout(self) -> TargetLayout:
        """Separator, namespace prefix and existing special-use folders, for the folder plan."""
        ...

    def existing_folders(self) -> set[str]:
        """Every folder on the target (that can hold messages)."""
        ...

    def create_folder(self, folder: str) -> list[str]:
        """Create (and subscribe) a folder, with any parents the server insists on; an already
        existing folder is not an error. Returns the folders created."""
        ...

    def message_counts(self, folders: Sequence[str]) -> dict[str, int | Exception]:
        """How many messages each folder holds, asked for all at once (one round trip where the
        protocol allows). A folder that can't be asked maps to the exception."""
        ...

    def append(
        self, folder: str, items: Sequence[AppendItem], keep_sending: Callable[[], None] = lambda: None
    ) -> list[AppendOutcome]:
        """Append ``items`` in order, batched where the server allows, one outcome per item.

        ``keep_sending`` is asked before each send (IMAP: right before each piece of the APPEND, its
        first included; EWS: each CreateItem of the batch after the first, a busy server's resends
        aside; Graph: each create) and
        raises to stop: what was half sent is abandoned (IMAP: the connection dropped, so the server
        discards it). The engine passes its lease check: a runner frozen in mid-append must not
        finish it once another runner took the mailbox over."""
        ...

    def list_items(self, folder: str) -> dict[str, ListedItem]:
        """``{item id: its size, arrival date (an IMAP INTERNALDATE) and flags as the target keeps
        them}`` of every item in the folder, in one pass; only asked when ``capabilities.keeps_bytes``
        (verification: a server may store another date than the one sent, e.g. the time of the APPEND
        for a date in the future, or drop a flag it can't keep)."""
        ...

    def digests(self, folder: str) -> Iterator[tuple[str, int, bytes]]:
        """``(item id, size, sha256)`` of every item; only asked when ``capabilities.keeps_bytes``."""
        ...

    def kept_items(self, folder: str, *, deep: bool) -> dict[str, KeptItem]:
        """``{item id: KeptItem}`` of every item in the folder, as the target keeps it (verification);
        only asked when not ``capabilities.keeps_bytes``. With ``deep``, headers, body texts and
        attachment digests are filled (``runners.kept.content_of`` of what the target renders)."""
        ...

    def set_flags(self, folder: str, changes: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        """Replace the flags of items (flag sync); only asked when ``capabilities.flags_mutable``."""
        ...

    def close(self) -> None: ...

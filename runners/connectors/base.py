"""The interfaces the engine drives. Each protocol module implements one of them.

A session is used by one thread at a time. Every method raises a ``runners.errors.ProtocolError``
subclass on failure, keeping the server's own words.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Protocol

from runners.model import (
    AppendItem,
    AppendOutcome,
    FetchedMessage,
    FetchFailure,
    FolderInfo,
    FolderState,
    MessageMeta,
)


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


class TargetSession(Protocol):
    """Writes into a mailbox."""

    server: str
    separator: str
    #: Personal namespace prefix that new folders go under ("" on Dovecot, "INBOX." on Courier).
    prefix: str

    def special_folders(self) -> dict[str, str]:
        """Existing special-use folders by path joined with ``/``: ``{"\\\\Sent": "Sent Items"}``."""
        ...

    def existing_folders(self) -> set[str]:
        """Wire names of every folder on the target."""
        ...

    def create_folder(self, wire_name: str) -> None:
        """Create (and subscribe) a folder; an already existing folder is not an error."""
        ...

    def folder_state(self, wire_name: str) -> FolderState: ...

    def append(self, wire_name: str, items: Sequence[AppendItem]) -> list[AppendOutcome]:
        """Append ``items`` in order, batched where the server allows, one outcome per item."""
        ...

    def list_sizes(self, wire_name: str) -> dict[int, int]:
        """``{uid: size}`` of every message in the folder (verification)."""
        ...

    def fetch_digests(self, wire_name: str, min_uid: int) -> Iterator[tuple[int, int, bytes]]:
        """``(uid, size, sha256)`` of every message with UID >= ``min_uid``, for reconciliation."""
        ...

    def set_flags(self, wire_name: str, changes: Sequence[tuple[int, tuple[str, ...]]]) -> None:
        """Replace the flags of target UIDs (flag sync on delta passes)."""
        ...

    def close(self) -> None: ...

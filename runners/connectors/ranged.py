"""Listing a folder a range of UIDs at a time, for sources that number their messages (IMAP).

A folder of half a million messages listed whole costs some 250 MB (its metadata, the ledger rows
beside it); listed a range at a time, a pass holds one range (``LIST_CHUNK`` messages) whatever the
folder's size. The ranges cut the folder's UIDs into runs of about ``LIST_CHUNK`` messages each,
asked once when the folder opens; they cover every UID from 1 up (the last one has no upper end), so
a message expunged or added meanwhile can make a range shorter or longer, never be left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from runners.model import FolderInfo, FolderState, MessageMeta

#: Messages listed (and looked up in the ledger) at a time.
LIST_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class UidRange:
    low: int
    #: None: no upper end (``low:*``).
    high: int | None

    def holds(self, uid: int) -> bool:
        return uid >= self.low and (self.high is None or uid <= self.high)


@runtime_checkable
class RangedSource(Protocol):
    """A ``SourceSession`` that can also list a folder by UID ranges (the engine asks with isinstance)."""

    def open_folder(self, folder: FolderInfo) -> FolderState:
        """Open the folder read-only (again) and say its state; later calls work in it."""
        ...

    def uid_ranges(self, folder: FolderInfo, state: FolderState, size: int = LIST_CHUNK) -> list[UidRange]:
        """UID ranges of about ``size`` messages each covering the open folder (none when empty)."""
        ...

    def list_range(self, folder: FolderInfo, uids: UidRange) -> list[MessageMeta]:
        """The metadata of the folder's messages in ``uids``, in UID order (no bodies)."""
        ...


def cut(boundaries: list[int]) -> list[UidRange]:
    """Ranges ending at each boundary UID (sorted, distinct), then an open-ended last one."""
    out: list[UidRange] = []
    low = 1
    for uid in boundaries:
        if uid >= low:
            out.append(UidRange(low, uid))
            low = uid + 1
    out.append(UidRange(low, None))
    return out

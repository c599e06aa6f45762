"""Crash recovery for IMAP targets: the intent's UIDNEXT floor plus matching by content.

IMAP gives a new message a UID at or above the folder's UIDNEXT and keeps its bytes exactly, so a
message whose APPEND outcome a crash lost can only be among the messages at or above the floor
taken before that APPEND, with the very SHA-256 the intent recorded.

A server finishes a command it received whole even when its client is gone: an APPEND sent just
before a crash can be saved after the next run began (seen under load: Dovecot committed a dead
client's MULTIAPPEND a second after the kill, as the rerun looked). So before calling an APPEND of a
crashed run lost, the folder's UIDNEXT is watched until it stops growing (``quiet``), and the folder
looked at again.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Protocol

from runners.connectors.base import Uncertain
from runners.connectors.matching import content_pool
from runners.connectors.quiet import find_settling
from runners.model import AppendOutcome


class _UidTarget(Protocol):
    def uidnext(self, folder: str) -> int: ...

    def digests_from(self, folder: str, min_uid: int) -> Iterator[tuple[str, int, bytes]]: ...


class FloorRecovery:
    """``runners.connectors.base.Recovery`` for a target with UIDs: the mark is the UIDNEXT floor."""

    keyed = False  # it finds lost APPENDs by content above the floor

    def __init__(self, target: _UidTarget) -> None:
        self.target = target

    def mark(self, folder: str) -> str | None:
        return str(self.target.uidnext(folder))

    def advance(self, mark: str | None, outcomes: Sequence[AppendOutcome]) -> str | None:
        floor = int(mark or 1)
        for outcome in outcomes:
            if outcome.item_id is not None and int(outcome.item_id) >= floor:
                floor = int(outcome.item_id) + 1
        return str(floor)

    def find(
        self, folder: str, uncertain: Sequence[Uncertain], claimed: set[str], *, after_crash: bool = False
    ) -> list[str | None]:
        return find_settling(
            functools.partial(self._match, folder),
            lambda: self.target.uidnext(folder),
            uncertain,
            claimed,
            after_crash=after_crash,
        )

    def _match(self, folder: str, uncertain: Sequence[Uncertain], claimed: set[str]) -> list[str | None]:
        floor = min(int(u.mark or 1) for u in uncertain)
        pool = content_pool(self.target.digests_from(folder, floor), claimed)
        found: list[str | None] = []
        for item in uncertain:
            ids = pool.get(item.sha256) if item.sha256 is not None else None
            found.append(ids.pop() if ids else None)
        return found

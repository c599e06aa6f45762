"""Crash recovery for keyed targets (Exchange EWS, Microsoft Graph): find an item by the key
stored on it.

Such a target re-renders MIME, so neither a UID floor nor the bytes' SHA-256 can find an item
again. Instead every appended item carries ``AppendItem.key`` in a property of its own (the
adapters of the Exchange issues choose which), and an uncertain intent is looked up by that key.
A dead client's last create may be carried out after the first look: then the folder's item count is
watched until it stays put (``quiet``), and the rest looked up again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol

from runners.connectors.base import Uncertain
from runners.connectors.quiet import find_settling
from runners.model import AppendOutcome


class KeyedTarget(Protocol):
    def find_by_keys(self, folder: str, keys: Sequence[str]) -> dict[str, str]:
        """``{key: item id}`` of the items in ``folder`` that carry one of ``keys``."""
        ...

    def message_counts(self, folders: Sequence[str]) -> dict[str, int | Exception]: ...


class KeyedRecovery:
    """``runners.connectors.base.Recovery`` by stored key: no mark is needed before an APPEND."""

    keyed = True

    def __init__(self, target: KeyedTarget) -> None:
        self.target = target

    def mark(self, folder: str) -> str | None:
        return None

    def advance(self, mark: str | None, outcomes: Sequence[AppendOutcome]) -> str | None:
        return None

    def find(
        self, folder: str, uncertain: Sequence[Uncertain], claimed: set[str], *, after_crash: bool = False
    ) -> list[str | None]:
        return find_settling(
            functools.partial(self._match, folder),
            lambda: self._count(folder),
            uncertain,
            claimed,
            after_crash=after_crash,
        )

    def _match(self, folder: str, uncertain: Sequence[Uncertain], claimed: set[str]) -> list[str | None]:
        found = self.target.find_by_keys(folder, [u.item_key for u in uncertain])
        out: list[str | None] = []
        for item in uncertain:
            item_id = found.get(item.item_key)
            out.append(item_id if item_id is not None and item_id not in claimed else None)
        return out

    def _count(self, folder: str) -> int | None:
        count = self.target.message_counts([folder]).get(folder)
        return count if isinstance(count, int) else None

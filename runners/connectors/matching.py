"""Matching by content: a multiset of target items by SHA-256, claimed at most once each."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def content_pool(items: Iterable[tuple[str, int, bytes]], claimed: set[str]) -> dict[bytes, list[str]]:
    """Unclaimed ``(item id, size, digest)`` by digest; ``pop()`` claims the earliest listed first, so
    n identical source messages claim n distinct target items in arrival order, never one twice."""
    pool: dict[bytes, list[str]] = defaultdict(list)
    for item_id, _size, digest in items:
        if item_id not in claimed:
            pool[digest].append(item_id)
    for ids in pool.values():
        ids.reverse()
    return dict(pool)

"""Matching by content against the target, for the two cases the UID ledger can't settle alone.

1. Pending intents left by a crash between APPEND and the ledger write: only target messages
   above each intent's floor (the target's UIDNEXT before that APPEND) can be ours.
2. A changed source UIDVALIDITY: every source UID is new, so the target folder's existing messages
   are matched by SHA-256 of their bytes. Matching is a multiset: n identical source messages claim
   n distinct target messages, never one twice.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from runners.connectors.base import TargetSession
from runners.state.store import StateStore


def unclaimed_digests(
    store: StateStore, target: TargetSession, mailbox_id: int, target_wire: str, min_uid: int
) -> dict[bytes, list[int]]:
    """Target messages at or above ``min_uid`` that no ledger row already claims, by digest."""
    claimed = store.mapped_target_uids(mailbox_id, target_wire)
    pool: dict[bytes, list[int]] = defaultdict(list)
    for uid, _size, digest in target.fetch_digests(target_wire, min_uid):
        if uid not in claimed:
            pool[digest].append(uid)
    # Pop from the end → claim the lowest UID first, so repeated matches stay in arrival order.
    for uids in pool.values():
        uids.sort(reverse=True)
    return dict(pool)


def resolve_pending(
    store: StateStore, target: TargetSession, mailbox_id: int, folder_id: int
) -> tuple[int, int]:
    """Settle intents of a folder: (found on the target, to be copied again)."""
    rows = store.pending(folder_id)
    if not rows:
        return 0, 0
    by_target: dict[str, list[sqlite3.Row]] = defaultdict(list)
    for row in rows:
        by_target[row["target_name"]].append(row)
    found: list[tuple[object, ...]] = []
    lost: list[tuple[int, str]] = []
    for wire, group in by_target.items():
        floor = min(int(r["floor_uid"] or 1) for r in group)
        pool = unclaimed_digests(store, target, mailbox_id, wire, floor)
        for r in group:
            uids = pool.get(r["sha256"])
            if uids:
                note = "found on the target after an interrupted run"
                found.append(("copied", uids.pop(), note, folder_id, r["uidvalidity"], r["src_key"]))
            else:
                lost.append((r["uidvalidity"], r["src_key"]))
    if found:
        store.record_results(found)
    if lost:
        store.forget_pending(folder_id, lost)
    return len(found), len(lost)

"""The two cases the ledger can't settle alone, asked of the target's adapter.

1. Pending intents left by a crash between APPEND and the ledger write: the target's recovery
   strategy finds them (IMAP: by content above the floor the intent recorded; a keyed target: by
   the key stored on the item) and the engine records them as copied, or forgets the intent so the
   message is copied again. The engine does the same for every target.
2. A changed source UIDVALIDITY: every source UID is new, so a target that keeps bytes exactly is
   matched by SHA-256 (a multiset: n identical source messages claim n distinct target items,
   never one twice). A keyed target re-renders messages, so its items' bytes prove nothing; the
   superseded ledger rows do: each says which item was made from source bytes of which SHA-256.
   Those items still on the target make the same multiset, by the source's digest.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from runners.connectors.base import TargetSession, Uncertain
from runners.connectors.matching import content_pool
from runners.engine import faults
from runners.state.rows import MessageRef, PendingIntent
from runners.state.store import StateStore

FOUND_NOTE = "found on the target after an interrupted run"


def item_key(folder_id: int, uidvalidity: int, src_key: str) -> str:
    """The key a keyed target stores on an appended item, to find it again after a crash: stable
    for one source message of one folder of this store, and telling nothing about its content."""
    return hashlib.sha256(f"{folder_id}/{uidvalidity}/{src_key}".encode()).hexdigest()[:32]


def unclaimed_digests(
    store: StateStore, target: TargetSession, mailbox_id: int, folder_id: int, target_wire: str
) -> dict[bytes, list[str]] | None:
    """Target items of the folder that no ledger row already claims, by the digest of the source
    bytes they hold; None when nothing can prove it (a target that neither keeps bytes nor keys)."""
    if target.capabilities.keeps_bytes:
        claimed = store.mapped_target_ids(mailbox_id, target_wire)
        return content_pool(target.digests(target_wire), claimed)
    if target.recovery.keyed:
        return earlier_copies(store, target, mailbox_id, folder_id, target_wire)
    return None


def earlier_copies(
    store: StateStore, target: TargetSession, mailbox_id: int, folder_id: int, target_wire: str
) -> dict[bytes, list[str]]:
    """The superseded rows' copies still on a keyed target and claimed by no copied row, by the
    SHA-256 of the source bytes they were made from (earliest source UID claimed first).

    One listing of the target folder says which are there: an item by the key stored on it, or by
    the id the row recorded (a copy matched so after an earlier UIDVALIDITY change carries that
    change's key). An item the user deleted is in neither, so its message is copied again.
    """
    rows = store.superseded_copies(folder_id, target_wire)
    if not rows:
        return {}
    kept = target.kept_items(target_wire, deep=False)
    by_key = {item.key: item_id for item_id, item in kept.items() if item.key}
    claimed = store.mapped_target_ids(mailbox_id, target_wire)
    pool: dict[bytes, list[str]] = defaultdict(list)
    for row in rows:
        item = by_key.get(item_key(*_key(row.ref)))
        if item is None and row.target_id in kept:
            item = row.target_id
        if item is not None and item not in claimed:
            claimed.add(item)  # one item answers for one message only
            pool[row.sha256].append(item)
    for ids in pool.values():
        ids.reverse()  # pop() claims the earliest first
    return dict(pool)


def resolve_pending(
    store: StateStore,
    target: TargetSession,
    mailbox_id: int,
    folder_id: int,
    run_id: int | None = None,
    *,
    inherited: bool = False,
) -> tuple[int, int]:
    """Settle intents of a folder: (found on the target, to be copied again).

    Intents of a run other than ``run_id``, or ``inherited`` ones (pending before the caller's job
    first settled the folder: a holder of the same run that died, whose mailbox it took over), are
    a dead client's: the target is given time to finish its last request. The others are the job's
    own (a connection of its own lost mid-pass): not waited for (see ``quiet.find_settling``)."""
    rows = store.pending(folder_id)
    if not rows:
        return 0, 0
    faults.reached("before-recovery")
    by_target: dict[str, list[PendingIntent]] = defaultdict(list)
    for row in rows:
        by_target[row.target_name].append(row)
    found: list[tuple[PendingIntent, str]] = []
    lost: list[PendingIntent] = []
    for folder, group in by_target.items():
        uncertain = [
            Uncertain(r.ref.uidvalidity, r.ref.src_key, r.sha256, r.recovery_mark, item_key(*_key(r.ref)))
            for r in group
        ]
        claimed = store.mapped_target_ids(mailbox_id, folder)
        after_crash = inherited or any(r.run_id != run_id for r in group)
        found_ids = target.recovery.find(folder, uncertain, claimed, after_crash=after_crash)
        for row, item_id in zip(group, found_ids, strict=True):
            if item_id is None:
                lost.append(row)
            else:
                found.append((row, item_id))
    store.settle_pending(found, lost, FOUND_NOTE)
    return len(found), len(lost)


def _key(ref: MessageRef) -> tuple[int, int, str]:
    return ref.folder_id, ref.uidvalidity, ref.src_key

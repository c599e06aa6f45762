"""The two cases the ledger can't settle alone, asked of the target's adapter.

1. Pending intents left by a crash between APPEND and the ledger write: the target's recovery
   strategy finds them (IMAP: by content above the floor the intent recorded; a keyed target: by
   the key stored on the item) and the engine records them as copied, or forgets the intent so the
   message is copied again. The engine does the same for every target.
2. A changed source UIDVALIDITY: every source UID is new, so a target that keeps bytes exactly is
   matched by SHA-256 (a multiset: n identical source messages claim n distinct target items,
   never one twice). A target that re-renders messages can't be matched so: they are copied again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from runners.connectors.base import TargetSession, Uncertain
from runners.connectors.matching import content_pool
from runners.state.rows import MessageRef, Outcome, PendingIntent
from runners.state.statuses import MessageStatus
from runners.state.store import StateStore

FOUND_NOTE = "found on the target after an interrupted run"


def item_key(folder_id: int, uidvalidity: int, src_key: str) -> str:
    """The key a keyed target stores on an appended item, to find it again after a crash: stable
    for one source message of one folder of this store, and telling nothing about its content."""
    return hashlib.sha256(f"{folder_id}/{uidvalidity}/{src_key}".encode()).hexdigest()[:32]


def unclaimed_digests(
    store: StateStore, target: TargetSession, mailbox_id: int, target_wire: str
) -> dict[bytes, list[str]] | None:
    """Target items of the folder that no ledger row already claims, by digest; None when the target
    doesn't keep bytes exactly (nothing can be proven by content)."""
    if not target.capabilities.keeps_bytes:
        return None
    claimed = store.mapped_target_ids(mailbox_id, target_wire)
    return content_pool(target.digests(target_wire), claimed)


def resolve_pending(
    store: StateStore, target: TargetSession, mailbox_id: int, folder_id: int
) -> tuple[int, int]:
    """Settle intents of a folder: (found on the target, to be copied again)."""
    rows = store.pending(folder_id)
    if not rows:
        return 0, 0
    by_target: dict[str, list[PendingIntent]] = defaultdict(list)
    for row in rows:
        by_target[row.target_name].append(row)
    found: list[Outcome] = []
    lost: list[MessageRef] = []
    for folder, group in by_target.items():
        uncertain = [
            Uncertain(r.ref.uidvalidity, r.ref.src_key, r.sha256, r.recovery_mark, item_key(*_key(r.ref)))
            for r in group
        ]
        claimed = store.mapped_target_ids(mailbox_id, folder)
        for row, item_id in zip(group, target.recovery.find(folder, uncertain, claimed), strict=True):
            if item_id is None:
                lost.append(row.ref)
            else:
                found.append(Outcome(row.ref, MessageStatus.COPIED, item_id, FOUND_NOTE))
    if found:
        store.record_results(found)
    if lost:
        store.forget_pending(lost)
    return len(found), len(lost)


def _key(ref: MessageRef) -> tuple[int, int, str]:
    return ref.folder_id, ref.uidvalidity, ref.src_key

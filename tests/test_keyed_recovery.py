"""The engine's crash-recovery path for a keyed target (the strategy the Exchange adapters will use).

There is no Exchange adapter yet, so ``KeyedMailbox`` below stands in for one: an in-memory target
that stores each item's key the way EWS/Graph store a property. What is tested is our engine and
ledger (intent before APPEND, outcome after, lookup by key on the next pass), not a protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from runners.connectors.keyed_recovery import KeyedRecovery
from runners.engine.pipeline import CopyContext, CopyCounters, copy_folder
from runners.engine.reconcile import resolve_pending
from runners.engine.resilience import AppendFailed
from runners.errors import ConnectionLost
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
from runners.state.store import StateStore

INBOX = FolderInfo("INBOX", ("INBOX",), "/")


class KeyedMailbox:
    server = "keyed://test"
    capabilities = TargetCapabilities(
        keeps_bytes=False, batch_messages=2, batch_bytes=None, flags_mutable=True, connections_per_mailbox=2
    )

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, bytes]] = {}  # item id -> (key, body)
        self.drop_after_append = False
        self.recovery = KeyedRecovery(self)

    def append(
        self, folder: str, items: Sequence[AppendItem], keep_sending: Callable[[], None] = lambda: None
    ) -> list[AppendOutcome]:
        outcomes = []
        for item in items:
            item_id = f"AAMk{len(self.items):04d}"
            self.items[item_id] = (item.key, item.body)
            outcomes.append(AppendOutcome(item_id=item_id))
        if self.drop_after_append:  # stored, but the answer never arrives
            raise ConnectionLost(self.server, f"append {folder}", "connection reset")
        return outcomes

    def find_by_keys(self, folder: str, keys: Sequence[str]) -> dict[str, str]:
        wanted = set(keys)
        return {key: item_id for item_id, (key, _) in self.items.items() if key in wanted}

    def layout(self) -> TargetLayout:
        return TargetLayout("/", "")

    def existing_folders(self) -> set[str]:
        return {"INBOX"}

    def create_folder(self, folder: str) -> list[str]:
        return []

    def message_counts(self, folders: Sequence[str]) -> dict[str, int | Exception]:
        return dict.fromkeys(folders, len(self.items))

    def digests(self, folder: str) -> Iterator[tuple[str, int, bytes]]:
        raise AssertionError("a target that doesn't keep bytes is never asked for digests")

    def list_items(self, folder: str) -> dict[str, ListedItem]:
        raise AssertionError("a target that doesn't keep bytes is never asked for its listing")

    def set_flags(self, folder: str, changes: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        pass

    def close(self) -> None:
        pass


class ListSource:
    server = "list://test"

    def __init__(self, bodies: list[bytes]) -> None:
        self.metas = [MessageMeta(str(i), i, len(b)) for i, b in enumerate(bodies, 1)]
        self.bodies = dict(zip((m.key for m in self.metas), bodies, strict=True))

    def fetch(
        self, folder: FolderInfo, metas: Sequence[MessageMeta]
    ) -> Iterator[FetchedMessage | FetchFailure]:
        for meta in metas:
            yield FetchedMessage(meta, self.bodies[meta.key])

    def list_folders(self) -> list[FolderInfo]:
        return [INBOX]

    def folder_states(self, folders: Sequence[FolderInfo]) -> dict[str, FolderState | Exception]:
        return {}

    def list_messages(self, folder: FolderInfo) -> tuple[FolderState, list[MessageMeta]]:
        return FolderState(1, len(self.metas) + 1, len(self.metas)), self.metas

    def close(self) -> None:
        pass


def test_an_interrupted_append_to_a_keyed_target_is_found_by_its_key(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    mailbox = store.upsert_mailbox("alice", "alice", "pilot")
    folder_id = store.folder(mailbox, "INBOX", "INBOX", "INBOX", None).id
    source, target = ListSource([b"one", b"two", b"three"]), KeyedMailbox()
    ctx = CopyContext(store, source, target, INBOX, folder_id, 1, "INBOX", 1, 200, 1 << 20)

    target.drop_after_append = True
    with pytest.raises(AppendFailed) as failed:  # the lost append, naming what it carried
        copy_folder(ctx, source.metas, CopyCounters())
    assert isinstance(failed.value.cause, ConnectionLost) and failed.value.uids == [1, 2]

    # The first batch (the target's own limit: 2) was stored but its outcome lost: pending, no mark.
    pending = store.pending(folder_id)
    assert [(p.ref.src_key, p.recovery_mark) for p in pending] == [("1", None), ("2", None)]
    assert resolve_pending(store, target, mailbox, folder_id) == (2, 0)
    ledger = store.ledger(folder_id, 1)
    assert (ledger["1"].status, ledger["1"].target_id) == ("copied", "AAMk0000")
    assert (ledger["2"].status, ledger["2"].target_id) == ("copied", "AAMk0001")

    # An intent whose item never arrived is forgotten, so the next pass copies it again.
    target.drop_after_append = True
    with pytest.raises(AppendFailed):
        copy_folder(ctx, source.metas[2:], CopyCounters())
    del target.items["AAMk0002"]
    assert resolve_pending(store, target, mailbox, folder_id) == (0, 1)
    assert "3" not in store.ledger(folder_id, 1)

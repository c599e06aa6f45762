"""The folder-pass decision, from a listing and a ledger."""

from __future__ import annotations

from runners.engine.triage import triage, unchanged
from runners.model import FolderState, MessageMeta
from runners.state.store import LedgerEntry


def entry(status: str, flags: str = "", uid: str | None = "10") -> LedgerEntry:
    return LedgerEntry(status, flags, uid, b"d", 100, None, None)


def test_only_what_the_ledger_lacks_is_copied_and_changed_flags_are_synced() -> None:
    metas = [
        MessageMeta("1", 1, 100, ("\\Seen", "$A")),
        MessageMeta("2", 2, 100, ("\\Flagged",)),
        MessageMeta("3", 3, 100),
        MessageMeta("4", 4, 100),
        MessageMeta("5", 5, 5000),
    ]
    ledger = {
        "1": entry("copied", "$A \\Seen"),  # same flags in another order: no change
        "2": entry("copied", "", uid="22"),  # flagged since: sync
        "3": entry("failed"),  # refused last time: try again
    }

    plan = triage(metas, ledger, limit=1000)

    assert [m.key for m in plan.todo] == ["3", "4"]
    assert plan.flag_changes == [("2", "22", ("\\Flagged",))]
    assert [(m.key, "over the target limit of 1000 bytes" in why) for m, why in plan.skipped] == [("5", True)]
    assert plan.present == 2


def test_a_folder_is_skipped_only_when_condstore_proves_nothing_changed() -> None:
    state = FolderState(7, 100, 99, 5000)
    assert unchanged(state, FolderState(7, 100, 99, 5000))
    assert not unchanged(state, FolderState(7, 100, 99, 5001))  # a flag changed
    assert not unchanged(None, state)  # never completed a pass
    assert not unchanged(FolderState(7, 100, 99), FolderState(7, 100, 99))  # no HIGHESTMODSEQ: can't tell

"""What a folder pass must do, decided from the source listing and the ledger alone (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.model import FolderState, MessageMeta, flag_text
from runners.state.statuses import MessageStatus
from runners.state.store import LedgerEntry


@dataclass(slots=True)
class Triage:
    todo: list[MessageMeta] = field(default_factory=list)
    skipped: list[tuple[MessageMeta, str]] = field(default_factory=list)
    #: (source key, target item id, the source's flags now) of copied messages whose flags changed.
    flag_changes: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    #: Messages the ledger already has on the target.
    present: int = 0
    #: Of those, the ones an earlier run copied (``run_id`` given and the rows carry theirs).
    earlier: int = 0
    #: Not copied on an operator's decision (``cutover skip``): left alone, counted apart.
    waived: int = 0
    #: New messages a retry-only pass leaves for the next normal pass.
    deferred: int = 0


def triage(
    metas: list[MessageMeta],
    ledger: dict[str, LedgerEntry],
    limit: int | None,
    *,
    retry_only: bool = False,
    run_id: int | None = None,
) -> Triage:
    """Split a folder's messages: to copy, to skip (with the reason), already copied (maybe with new flags).

    Failed, skipped and pending ledger rows are tried again: the target may accept now, the limit
    may have changed, and pending rows left here were not found on the target. With ``retry_only``
    only those are, and messages new since the last pass wait for a normal pass. ``run_id``: the
    current run, so that ``earlier`` counts what other runs copied.
    """
    out = Triage()
    for meta in metas:
        entry = ledger.get(meta.key)
        if entry is not None and entry.status == MessageStatus.COPIED:
            out.present += 1
            if entry.run_id != run_id:
                out.earlier += 1
            if entry.target_id is not None and entry.flags != flag_text(meta.flags):
                out.flag_changes.append((meta.key, entry.target_id, meta.flags))
        elif entry is not None and entry.status == MessageStatus.WAIVED:
            out.waived += 1
        elif retry_only and entry is None:
            out.deferred += 1
        elif limit is not None and meta.size > limit:
            reason = f"message is {meta.size} bytes, over the target limit of {limit} bytes (target.max_message_bytes)"
            out.skipped.append((meta, reason))
        else:
            out.todo.append(meta)
    return out


def unchanged(last: FolderState | None, now: FolderState) -> bool:
    """Without HIGHESTMODSEQ a flag change is invisible to STATUS, so only CONDSTORE folders skip."""
    return last is not None and now.highestmodseq is not None and last == now

"""Counters the engine keeps while it runs; read by the progress display and the summary."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from runners.state.store import MailboxProgress


@dataclass(slots=True)
class FolderReport:
    source: str
    target: str
    source_messages: int = 0
    source_bytes: int = 0
    already_present: int = 0
    target_messages: int | None = None
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    excluded: str | None = None
    error: str | None = None
    unchanged: bool = False
    #: Listed at least once in this run: a listing after a reconnect replaces the first one.
    listed: bool = False


@dataclass(slots=True)
class MailboxStats:
    source: str
    target: str
    state: str = "pending"
    folders_total: int = 0
    folders_done: int = 0
    current_folder: str = ""
    messages_total: int = 0
    bytes_total: int = 0
    copied: int = 0
    bytes_copied: int = 0
    already_present: int = 0  # in the ledger from an earlier pass: not copied again
    matched_by_content: int = 0  # found on the target by content after a crash or UIDVALIDITY change
    skipped: int = 0
    failed: int = 0
    flags_synced: int = 0
    folders_created: int = 0
    reconnects: int = 0
    error: str | None = None
    error_kind: str | None = None
    started: float = 0.0
    ended: float = 0.0
    folders: list[FolderReport] = field(default_factory=list)
    #: The highest (done, total) shown so far: see ``shown``.
    _shown: tuple[int, int] = (0, 0)

    @property
    def duplicates_avoided(self) -> int:
        return self.already_present + self.matched_by_content

    @property
    def done(self) -> int:
        """Messages dealt with: copied, already on the target, skipped or failed."""
        return self.copied + self.duplicates_avoided + self.skipped + self.failed

    def shown(self) -> tuple[int, int]:
        """``(done, total)`` for a progress display: never lower than shown before.

        A folder listed again after a reconnect re-counts its skipped and failed messages, so the
        counters dip for a moment; a display must not jump back and forth with them.
        """
        done, total = self._shown
        done = max(done, self.done)
        total = max(total, self.messages_total, done)
        self._shown = (done, total)
        return self._shown

    def progress(self) -> MailboxProgress:
        done, total = self.shown()
        return MailboxProgress(
            total,
            self.bytes_total,
            done,
            self.bytes_copied,
            self.failed,
            self.skipped,
            self.current_folder or None,
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["_shown"]
        data["duplicates_avoided"] = self.duplicates_avoided
        return data


class RunStats:
    """Aggregate over mailboxes. Integer updates from worker threads are atomic under the GIL."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.mailboxes: dict[str, MailboxStats] = {}
        self._lock = threading.Lock()

    def add(self, stats: MailboxStats) -> None:
        with self._lock:
            self.mailboxes[stats.source] = stats

    def shown(self) -> tuple[int, int]:
        """``(done, total)`` over every mailbox for a progress display: each only ever grows."""
        with self._lock:
            boxes = list(self.mailboxes.values())
        pairs = [m.shown() for m in boxes]
        return sum(d for d, _ in pairs), sum(t for _, t in pairs)

    def totals(self) -> dict[str, int]:
        keys = (
            "messages_total",
            "bytes_total",
            "copied",
            "bytes_copied",
            "already_present",
            "matched_by_content",
            "skipped",
            "failed",
            "flags_synced",
            "reconnects",
        )
        with self._lock:
            boxes = list(self.mailboxes.values())
        out = {k: sum(getattr(m, k) for m in boxes) for k in keys}
        out["duplicates_avoided"] = out["already_present"] + out["matched_by_content"]
        out["mailboxes"] = len(boxes)
        out["mailboxes_ok"] = sum(1 for m in boxes if m.state == "ok")
        out["mailboxes_partial"] = sum(1 for m in boxes if m.state == "partial")
        out["mailboxes_failed"] = sum(1 for m in boxes if m.state == "failed")
        return out

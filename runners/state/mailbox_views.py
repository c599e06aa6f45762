"""The typed rows the state store's viewer reads return (``MailboxReadsMixin``), apart from the
reads themselves: a run never reads them, and a dataclass costs its module ~1 ms to build at import
(``cutover run``'s start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from runners.state.statuses import AttemptStatus, MailboxState, MessageStatus


@dataclass(frozen=True, slots=True)
class MailboxRow:
    """A mailbox's live counters, as the engine keeps them (``mailboxes``)."""

    source: str
    target: str
    wave: str
    state: MailboxState
    messages_total: int
    messages_done: int
    bytes_total: int
    bytes_done: int
    failed: int
    skipped: int
    current_folder: str | None
    error: str | None
    error_kind: str | None
    updated: float | None
    #: From the ledger, cumulative across passes and retries (``with_ledger``; None until counted). The
    #: counters above are the current run's only: a retry of one message starts them again at 0/1.
    copied: int | None = None
    #: What the source holds: its folders as of their last completed pass, or this run's count if larger.
    source_holds: int | None = None
    #: Bytes copied (cumulative, like ``copied``) and the source's bytes as of its folders' last pass.
    copied_bytes: int | None = None
    source_bytes: int = 0
    #: Folders the last pass could not open or copy (``folders.error``).
    folder_errors: int = 0

    @property
    def done_of_total(self) -> tuple[int, int]:
        """Messages copied of what the source holds (cumulative), or the run's counters until counted."""
        if self.copied is None:
            return self.messages_done, self.messages_total
        return self.copied, max(self.source_holds or 0, self.copied)

    @property
    def progress(self) -> float:
        done, total = self.done_of_total
        return min(done / total, 1.0) if total else 0.0

    @property
    def ok(self) -> bool:
        return (
            self.state in (MailboxState.OK, MailboxState.PENDING)
            and not self.failed
            and not self.skipped
            and not self.error
        )

    def with_ledger(self, ledger: LedgerProgress | None) -> MailboxRow:
        """This row with its cumulative counts (``cumulative``)."""
        if ledger is None:
            return self
        copied, holds, copied_bytes, source_bytes, failed, skipped = cumulative(
            self.state, self.messages_total, self.messages_done, self.bytes_total, self.bytes_done,
            self.failed, self.skipped, ledger,
        )  # fmt: skip
        # The constructor, not dataclasses.replace: five times faster, and a poll makes hundreds.
        return MailboxRow(
            self.source, self.target, self.wave, self.state, self.messages_total, self.messages_done,
            self.bytes_total, self.bytes_done, failed, skipped, self.current_folder, self.error,
            self.error_kind, self.updated, copied, holds, copied_bytes, source_bytes, ledger.folder_errors,
        )  # fmt: skip


def cumulative(
    state: str,
    messages_total: int,
    messages_done: int,
    bytes_total: int,
    bytes_done: int,
    failed: int,
    skipped: int,
    ledger: LedgerProgress,
) -> tuple[int, int, int, int, int, int]:
    """A mailbox's shown counts from its run counters and its ledger: (copied, what the source holds,
    bytes copied, the source's bytes, failed, skipped). The ledger is cumulative across passes and
    retries; while the mailbox runs it is read less often than the counters, so the larger is shown.
    Never fewer failures than the run counted (the attention filter, in SQL, reads the counters)."""
    copied, copied_bytes = ledger.copied, ledger.copied_bytes
    if state == MailboxState.RUNNING:
        copied = max(copied, messages_done - failed - skipped)
        copied_bytes = max(copied_bytes, bytes_done)
    return (
        copied,
        max(ledger.source_messages, messages_total, copied),
        copied_bytes,
        max(ledger.source_bytes, bytes_total),
        max(ledger.failed, failed),
        max(ledger.skipped, skipped),
    )


#: (source, wave, state, messages_total, messages_done, bytes_total, bytes_done, failed, skipped, updated):
#: one mailbox's counters as plain values, read for the whole fleet on every poll (no object per row).
FleetCounters = tuple[str, str, str, int, int, int, int, int, int, float | None]


class LedgerProgress(NamedTuple):
    """One mailbox's ledger summed: what every pass and retry so far has copied, failed or skipped, and
    what its folders held at their last completed pass. A tuple of ints, which the garbage collector
    stops tracking: a viewer keeps one per mailbox of a fleet, and every full collection would walk them."""

    copied: int
    copied_bytes: int
    failed: int
    skipped: int
    source_messages: int
    source_bytes: int
    folder_errors: int


@dataclass(frozen=True, slots=True)
class MailboxQuery:
    """Which mailbox rows a viewer wants: filtering, ordering and the limit run in SQL, so a poll
    costs what is shown, not the size of the fleet."""

    wave: str | None = None
    #: Substring of the source, target or state (case-insensitive); "" for any.
    text: str = ""
    #: Only mailboxes that need attention: not ok, failures or skips, an error (running ones too).
    attention: bool = False
    #: One mailbox by its source address.
    source: str | None = None
    order: str = "source"  # source (or mailbox) | failed | progress
    limit: int | None = None
    #: A window of the list (``mailbox_pages``): from this mailbox on (None: from the first) ...
    start: str | None = None
    #: ... or from this many rows before ``start`` (before the end when ``start`` is None).
    back: int = 0


@dataclass(frozen=True, slots=True)
class MailboxPage:
    """A window of the mailbox list and the mailbox it starts at (None: the first of the list)."""

    rows: list[MailboxRow]
    start: str | None


@dataclass(frozen=True, slots=True)
class WaveStateTotals:
    """The counters of a wave's mailboxes in one state, summed."""

    wave: str
    state: MailboxState
    mailboxes: int
    messages_total: int
    messages_done: int
    bytes_done: int
    failed: int
    skipped: int
    bytes_total: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    ts: float
    level: str  # info | warning | error
    kind: str
    mailbox: str | None
    folder: str | None
    message: str


@dataclass(frozen=True, slots=True)
class MailboxLedgerRow:
    """A mailbox with its ledger counted by status (``cutover status``)."""

    id: int
    source: str
    target: str
    wave: str
    state: MailboxState
    error: str | None
    error_kind: str | None
    updated: float | None
    copied: int
    skipped: int
    failed: int
    pending: int
    bytes_copied: int


@dataclass(frozen=True, slots=True)
class FolderErrorRow:
    """A folder the last pass could not copy (``folders.error``)."""

    source: str
    source_path: str
    error: str


@dataclass(frozen=True, slots=True)
class MessageAttempt:
    """One outcome that left a message not copied: failed, skipped, or waived by an operator."""

    run_id: int | None  # None: an operator's decision, not a run
    at: float
    status: AttemptStatus
    reason: str | None


@dataclass(frozen=True, slots=True)
class NotCopiedRow:
    """A message not copied, with every attempt on it."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    size: int
    internaldate: str | None
    status: MessageStatus
    reason: str | None
    attempts: int
    history: tuple[MessageAttempt, ...] = ()


@dataclass(frozen=True, slots=True)
class FolderDetail:
    source: str
    target: str
    source_messages: int | None  # as of the last completed pass
    source_bytes: int | None  # the same pass
    copied: int
    copied_bytes: int
    skipped: int
    failed: int
    pending: int
    excluded: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class MessageIssue:
    folder: str
    uid: int
    size: int
    internaldate: str | None
    status: MessageStatus
    reason: str | None
    attempts: int
    #: Where to find it on the source again (runners.peek): the folder's name there, the ledger's
    #: key (UID, POP3 UIDL or Maildir file name) and UIDVALIDITY.
    source_name: str = ""
    key: str = ""
    uidvalidity: int = 0


@dataclass(frozen=True, slots=True)
class MailboxDetail:
    source: str
    folders: tuple[FolderDetail, ...] = ()
    issues: tuple[MessageIssue, ...] = field(default_factory=tuple)

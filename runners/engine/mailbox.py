"""One mailbox: map folders, then sync each one, reconnecting when a connection drops."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runners.connectors.base import SourceSession, TargetSession
from runners.connectors.imap_source import ImapSource
from runners.engine.control import ControlWatcher
from runners.engine.pipeline import CopyContext, CopyCounters, copy_folder, unsent_row
from runners.engine.reconcile import resolve_pending, unclaimed_digests
from runners.engine.sessions import ConnectionCaps
from runners.engine.stats import FolderReport, MailboxStats
from runners.engine.triage import triage, unchanged
from runners.errors import (
    AuthError,
    CommandError,
    ConnectError,
    ConnectionLost,
    FetchConnectionLost,
    MailboxCancelled,
    MailboxFatal,
    MigrationError,
    ProtocolError,
    RunInterrupted,
)
from runners.folders import FolderMapping, plan_folders
from runners.model import FolderState, MessageMeta, flag_text
from runners.plan.model import MailboxEntry, Plan
from runners.state.statuses import MailboxState, MessageStatus
from runners.state.store import StateStore

log = logging.getLogger("cutover.engine")

#: Seconds to wait before each reconnect attempt; the last value repeats until attempts run out.
BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
MAX_ATTEMPTS = 6


@dataclass(slots=True)
class Sessions:
    source: SourceSession | None = None
    target: TargetSession | None = None


@dataclass(frozen=True, slots=True)
class _OpenFolder:
    """A folder whose source side is open for this pass: what the pass's later steps work on."""

    mapping: FolderMapping
    id: int
    state: FolderState
    report: FolderReport

    @property
    def display(self) -> str:
        return self.mapping.source.display


class MailboxJob:
    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        caps: ConnectionCaps,
        entry: MailboxEntry,
        mailbox_id: int,
        run_id: int,
        stats: MailboxStats,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
        controls: ControlWatcher | None = None,
        retry_failed: bool = False,
    ) -> None:
        self.plan = plan
        self.store = store
        self.caps = caps
        self.entry = entry
        self.mailbox_id = mailbox_id
        self.run_id = run_id
        self.stats = stats
        self.sleep = sleep
        self.stop = stop or threading.Event()
        self.controls = controls
        #: Only messages that failed or were skipped before, and folders that failed to open.
        self.retry_failed = retry_failed
        self.sessions = Sessions()
        # Crash isolation across reconnects within one folder (see _retrying).
        self._fetch_singly: set[int] = set()
        self._poisoned: set[int] = set()
        self._fetching: tuple[int, int, dict[int, MessageMeta]] | None = None
        self._existing: set[str] = set()  # target folders known to exist

    # -- sessions ------------------------------------------------------------------------------

    def _source(self) -> SourceSession:
        if self.sessions.source is None:
            self.sessions.source = self.caps.open_source(self.plan.source, self.entry)
        return self.sessions.source

    def _target(self) -> TargetSession:
        if self.sessions.target is None:
            self.sessions.target = self.caps.open_target(self.plan.target, self.entry)
        return self.sessions.target

    def _drop_sessions(self) -> None:
        if self.sessions.source is not None:
            self.caps.close_source(self.plan.source, self.sessions.source)
        if self.sessions.target is not None:
            self.caps.close_target(self.plan.target, self.entry, self.sessions.target)
        self.sessions = Sessions()

    def _retrying(self, what: str, action: Callable[[], None]) -> None:
        """Run ``action``, reconnecting with backoff on dropped connections and 'try later' answers.

        A drop while the source sends bodies narrows down instead of counting as a failed attempt:
        the undelivered messages are fetched one by one next time, and a message that drops the
        connection on its own is recorded as failed (the run goes on without it).
        """
        failures = 0
        while True:
            try:
                action()
                return
            except FetchConnectionLost as exc:
                problem: ProtocolError = exc
                progress = self._narrow_down(exc)
            except (ConnectionLost, ConnectError) as exc:
                if not exc.retryable:
                    raise
                problem, progress = exc, False
            except (CommandError, AuthError) as exc:
                if not exc.retryable:  # NO [INUSE], [UNAVAILABLE], [LIMIT] outside APPEND: try later
                    raise
                problem, progress = exc, False
            self._drop_sessions()
            if not progress:
                failures += 1
                if failures == MAX_ATTEMPTS:
                    raise problem
            delay = BACKOFF[min(failures - 1, len(BACKOFF) - 1)] if not progress else 0.0
            self.stats.reconnects += 1
            self._event("warning", "reconnect", f"{what}: {problem}; reconnecting in {delay:.0f} s")
            self.sleep(delay)

    def _narrow_down(self, exc: FetchConnectionLost) -> bool:
        """True when the drop identified a culprit (progress), False when it only narrowed the search."""
        if not exc.single:
            self._fetch_singly.update(exc.uids)
            return bool(exc.uids)
        uid = exc.uids[0]
        context = self._fetching
        if context is None or uid in self._poisoned:
            return False
        folder_id, uidvalidity, metas = context
        meta = metas.get(uid)
        if meta is None:
            return False
        self._poisoned.add(uid)
        reason = f"the source closed the connection while sending this message ({exc.operation}: {exc.server_text})"
        self.store.record_unsent([unsent_row(folder_id, uidvalidity, meta, "failed", reason, self.run_id)])
        self.stats.failed += 1
        self._event("error", "message-failed", f"UID {uid}: {reason}", folder=exc.folder)
        return True

    def _checkpoint(self) -> None:
        """Between batches and folders: honour a stop, a pause (wait here) or a cancel request."""
        if self.stop.is_set():
            raise RunInterrupted("the run was asked to stop")
        if self.controls is None:
            return

        def paused() -> None:
            self.stats.state = MailboxState.PAUSED
            self.store.set_mailbox_state(self.mailbox_id, MailboxState.PAUSED)
            self._event("info", "paused", "paused on request, after the current batch")

        if not self.controls.checkpoint(self.entry.source, paused, abort=self.stop):
            self._event("info", "cancelled", "cancelled on request; the next run continues from here")
            raise MailboxCancelled("cancelled on request")
        if self.stop.is_set():
            raise RunInterrupted("the run was asked to stop")
        if self.stats.state == MailboxState.PAUSED:
            self.stats.state = MailboxState.RUNNING
            self.store.set_mailbox_state(self.mailbox_id, MailboxState.RUNNING)
            self._event("info", "resumed", "resumed on request")

    def _event(self, level: str, kind: str, message: str, folder: str | None = None) -> None:
        getattr(log, level if level != "warning" else "warning")("%s: %s", self.entry.source, message)
        self.store.event(self.run_id, level, kind, message, mailbox=self.entry.source, folder=folder)

    # -- the job -------------------------------------------------------------------------------

    def run(self) -> MailboxStats:
        stats = self.stats
        stats.started = time.time()
        stats.state = MailboxState.RUNNING
        try:
            self._checkpoint()
            mappings: list[FolderMapping] = []
            self._retrying("prepare", lambda: mappings.extend(self._prepare()))
            states: dict[str, FolderState | Exception] = {}
            selectable = [m.source for m in mappings if m.excluded is None]
            self._retrying("status", lambda: states.update(self._source().folder_states(selectable)))
            # \Noselect placeholders hold no messages: they're hierarchy, not folders to report.
            mappings = [m for m in mappings if m.source.selectable]
            stats.folders_total = len(mappings)
            for mapping in mappings:
                self._checkpoint()
                stats.current_folder = mapping.source.display
                report = FolderReport(mapping.source.display, mapping.target_wire, excluded=mapping.excluded)
                stats.folders.append(report)
                self._sync_folder_guarded(mapping, states.get(mapping.source.raw_name), report)
                stats.folders_done += 1
            self._target_counts(mappings)
            stats.state = (
                MailboxState.OK
                if not (stats.failed or stats.skipped or _folder_errors(stats))
                else MailboxState.PARTIAL
            )
        except RunInterrupted:
            stats.state = MailboxState.PENDING
        except MailboxCancelled:
            stats.state = MailboxState.CANCELLED
        except MailboxFatal as exc:
            stats.state, stats.error, stats.error_kind = (
                MailboxState.FAILED,
                str(exc),
                "target-refused-mailbox",
            )
        except AuthError as exc:
            stats.state, stats.error, stats.error_kind = MailboxState.FAILED, str(exc), "login"
        except ProtocolError as exc:
            stats.state, stats.error = MailboxState.FAILED, str(exc)
            stats.error_kind = "retry-later" if exc.retryable else "protocol"
        except MigrationError as exc:
            stats.state, stats.error, stats.error_kind = MailboxState.FAILED, str(exc), "config"
        finally:
            self._drop_sessions()
            stats.current_folder = ""
            stats.ended = time.time()
        if stats.error:
            self._event("error", "mailbox-failed", stats.error)
        return stats

    def _prepare(self) -> list[FolderMapping]:
        source, target = self._source(), self._target()
        mappings = plan_folders(source.list_folders(), self.plan.folders, target.layout())
        # Folders are created when their source folder opens (_open_target_folder), so that one the
        # source refuses doesn't leave an empty copy on the target.
        self._existing = target.existing_folders()
        for mapping in mappings:
            if mapping.excluded is None:
                for note in mapping.notes:
                    self._event("warning", "folder-renamed", note, folder=mapping.source.display)
        return mappings

    def _sync_folder_guarded(
        self, mapping: FolderMapping, hint: FolderState | Exception | None, report: FolderReport
    ) -> None:
        row = self.store.folder(
            self.mailbox_id,
            mapping.source.raw_name,
            mapping.source.display,
            mapping.target_wire,
            mapping.excluded,
        )
        if mapping.excluded is not None:
            return
        try:
            self._fetch_singly, self._poisoned, self._fetching = set(), set(), None
            self._retrying(
                f"folder {mapping.source.display}",
                lambda: self._sync_folder(mapping, row.id, row.state, hint, report),
            )
        except MailboxFatal:
            raise
        except CommandError as exc:
            # The source (or target) refuses this folder: record its words and go on with the rest.
            report.error = exc.server_text or str(exc)
            self.store.folder_error(row.id, f"{exc.operation}: {exc.server_text}")
            self._event(
                "error", "folder-failed", f"{exc.operation}: {exc.server_text}", folder=mapping.source.display
            )

    def _sync_folder(
        self,
        mapping: FolderMapping,
        folder_id: int,
        last: FolderState | None,
        hint: FolderState | Exception | None,
        report: FolderReport,
    ) -> None:
        """One folder pass, in named steps; retried whole after a reconnect (``_retrying``)."""
        self._forget_contribution(report)
        if self._nothing_to_do(folder_id, last, hint, report):
            return
        source, target = self._source(), self._target()
        self._recover_interrupted(target, mapping, folder_id)
        state, metas = source.list_messages(mapping.source)
        folder = _OpenFolder(mapping, folder_id, state, report)
        self._open_target_folder(target, mapping.target_wire)
        prematched, uidvalidity_changed = self._follow_uidvalidity(target, folder)
        plan = triage(
            metas,
            self.store.ledger(folder_id, state.uidvalidity),
            self.plan.target.max_message_bytes,
            retry_only=self.retry_failed,
        )
        # Messages that dropped the connection earlier in this run stay failed until the next run.
        todo = [m for m in plan.todo if m.uid not in self._poisoned]
        source_bytes = sum(m.size for m in metas if m.size > 0)
        self._contribute(report, len(metas), source_bytes, plan.present)
        self._record_skipped(folder, plan.skipped)
        self._sync_flags(target, folder, plan.flag_changes)
        self._copy(source, target, folder, todo, prematched)
        self._report_failures(folder)
        self._close_pass(folder, source_bytes, uidvalidity_changed)

    def _nothing_to_do(
        self,
        folder_id: int,
        last: FolderState | None,
        hint: FolderState | Exception | None,
        report: FolderReport,
    ) -> bool:
        """A retry pass with nothing failed here, or a folder unchanged since the last pass (CONDSTORE)."""
        if (
            self.retry_failed
            and not self.store.folder_needs_work(folder_id)
            and not self.store.folder_failed(folder_id)
        ):
            report.unchanged = True
            return True
        if (
            isinstance(hint, FolderState)
            and unchanged(last, hint)
            and not self.store.folder_needs_work(folder_id)
        ):
            report.unchanged = True
            self._contribute(report, hint.messages, 0, hint.messages)
            return True
        return False

    def _recover_interrupted(self, target: TargetSession, mapping: FolderMapping, folder_id: int) -> None:
        """Settle APPENDs a crash left pending, by the target's recovery strategy."""
        found, lost = resolve_pending(self.store, target, self.mailbox_id, folder_id)
        self.stats.matched_by_content += found
        if found or lost:
            self._event(
                "info",
                "reconciled",
                f"interrupted APPENDs: {found} found on the target, {lost} to copy again",
                folder=mapping.source.display,
            )

    def _open_target_folder(self, target: TargetSession, folder: str) -> None:
        """Create the target folder when its source folder opened (not before: see ``_prepare``)."""
        if folder in self._existing:
            return
        created = target.create_folder(folder)
        self._existing.update(created)
        self.stats.folders_created += len(created)

    def _follow_uidvalidity(
        self, target: TargetSession, folder: _OpenFolder
    ) -> tuple[dict[bytes, list[str]] | None, bool]:
        """A changed source UIDVALIDITY makes every UID new: match by content where the target allows."""
        uidvalidity = folder.state.uidvalidity
        if not self.store.supersede_other_uidvalidity(folder.id, uidvalidity):
            return None, False
        self._event(
            "warning",
            "uidvalidity",
            f"source UIDVALIDITY changed to {uidvalidity}: matching by content against the target",
            folder=folder.display,
        )
        return unclaimed_digests(self.store, target, self.mailbox_id, folder.mapping.target_wire), True

    def _record_skipped(self, folder: _OpenFolder, skipped: list[tuple[MessageMeta, str]]) -> None:
        if not skipped:
            return
        uidvalidity = folder.state.uidvalidity
        self.store.record_unsent(
            unsent_row(folder.id, uidvalidity, m, MessageStatus.SKIPPED, reason, self.run_id)
            for m, reason in skipped
        )
        for m, reason in skipped:
            self._event("warning", "skipped", f"UID {m.uid}: {reason}", folder=folder.display)
        folder.report.skipped += len(skipped)
        self.stats.skipped += len(skipped)

    def _sync_flags(
        self, target: TargetSession, folder: _OpenFolder, changes: list[tuple[str, str, tuple[str, ...]]]
    ) -> None:
        """Copied messages whose flags changed on the source since: the target follows, if it can."""
        if not changes or not target.capabilities.flags_mutable:
            return
        target.set_flags(folder.mapping.target_wire, [(item, flags) for _, item, flags in changes])
        self.store.update_flags(
            folder.id, folder.state.uidvalidity, [(k, flag_text(f)) for k, _, f in changes]
        )
        self.stats.flags_synced += len(changes)

    def _copy(
        self,
        source: SourceSession,
        target: TargetSession,
        folder: _OpenFolder,
        todo: list[MessageMeta],
        prematched: dict[bytes, list[str]] | None,
    ) -> None:
        """Copy ``todo``, keeping the mailbox's counters and the store's progress current per batch."""
        folder_id, state, mapping = folder.id, folder.state, folder.mapping
        counters = CopyCounters()
        ctx = CopyContext(
            self.store,
            source,
            target,
            mapping.source,
            folder_id,
            state.uidvalidity,
            mapping.target_wire,
            self.run_id,
            self.plan.batch_messages,
            self.plan.batch_bytes,
            prematched,
        )
        done_before = (
            self.stats.copied,
            self.stats.bytes_copied,
            self.stats.failed,
            self.stats.matched_by_content,
        )

        def on_batch() -> None:
            self.stats.copied = done_before[0] + counters.copied
            self.stats.bytes_copied = done_before[1] + counters.bytes_copied
            self.stats.failed = done_before[2] + counters.failed
            self.stats.matched_by_content = done_before[3] + counters.matched
            self._checkpoint()
            self.store.mailbox_progress(self.mailbox_id, self.stats.progress())

        self._fetching = (folder_id, state.uidvalidity, {m.uid: m for m in todo})
        if isinstance(source, ImapSource):
            source.fetch_singly = self._fetch_singly
        try:
            copy_folder(ctx, todo, counters, on_batch)
        finally:
            on_batch()
            folder.report.copied += counters.copied

    def _report_failures(self, folder: _OpenFolder) -> None:
        failed_now = self.store.failed_in_run(folder.id, folder.state.uidvalidity, self.run_id)
        folder.report.failed = len(failed_now)
        for failed in failed_now:
            if failed.src_uid not in self._poisoned:  # those were reported when they happened
                self._event(
                    "error", "message-failed", f"UID {failed.src_uid}: {failed.reason}", folder=folder.display
                )

    def _close_pass(self, folder: _OpenFolder, source_bytes: int, uidvalidity_changed: bool) -> None:
        if uidvalidity_changed:
            self.store.drop_superseded(folder.id)
        if not self.retry_failed:
            # A retry pass left new messages aside: recording this state would hide them from the next pass.
            self.store.folder_done(folder.id, folder.state, source_bytes)
        else:
            self.store.folder_error(folder.id, None)

    def _contribute(self, report: FolderReport, messages: int, size: int, present: int) -> None:
        report.source_messages, report.source_bytes, report.already_present = messages, size, present
        self.stats.messages_total += messages
        self.stats.bytes_total += size
        self.stats.already_present += present

    def _forget_contribution(self, report: FolderReport) -> None:
        """A folder pass that is retried after a reconnect must not count its messages twice."""
        self.stats.messages_total -= report.source_messages
        self.stats.bytes_total -= report.source_bytes
        self.stats.already_present -= report.already_present
        self.stats.skipped -= report.skipped
        report.source_messages = report.source_bytes = report.already_present = report.skipped = 0

    def _target_counts(self, mappings: list[FolderMapping]) -> None:
        """Per-folder target message counts for the end-of-run comparison, asked all at once."""
        target = self.sessions.target
        if target is None:
            return
        folders = list(dict.fromkeys(m.target_wire for m in mappings if m.excluded is None))
        try:
            counts = target.message_counts(folders) if folders else {}
        except ProtocolError:
            return
        for report in self.stats.folders:
            count = counts.get(report.target)
            report.target_messages = count if isinstance(count, int) else None


def _folder_errors(stats: MailboxStats) -> bool:
    return any(f.error for f in stats.folders)

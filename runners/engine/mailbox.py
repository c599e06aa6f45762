"""One mailbox: map folders, then sync each one, reconnecting when a connection drops."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runners.connectors.base import SourceSession, TargetSession
from runners.engine.control import ControlWatcher
from runners.engine.pipeline import CopyContext, CopyCounters, copy_folder, unsent_row
from runners.engine.reconcile import resolve_pending, unclaimed_digests
from runners.engine.resilience import Reconnecting, Suspects, culprit_reason
from runners.engine.sessions import ConnectionCaps
from runners.engine.stats import FolderReport, MailboxStats
from runners.engine.triage import triage, unchanged
from runners.engine.wave_faults import WaveFaults
from runners.errors import (
    AuthError,
    CommandError,
    FetchConnectionLost,
    MailboxCancelled,
    MailboxFatal,
    MigrationError,
    ProtocolError,
    RunInterrupted,
)
from runners.folders import FolderMapping, plan_folders
from runners.model import FolderState, MessageMeta, TargetLayout, flag_text
from runners.plan.model import MailboxEntry, Plan
from runners.safe_text import safe
from runners.state.errors import StoreError
from runners.state.statuses import MailboxState, MessageStatus
from runners.state.store import StateStore

log = logging.getLogger("cutover.engine")


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
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
        controls: ControlWatcher | None = None,
        retry_failed: bool = False,
        wave_faults: WaveFaults | None = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.caps = caps
        self.entry = entry
        self.mailbox_id = mailbox_id
        self.run_id = run_id
        self.stats = stats
        self.sleep = sleep or self._backoff
        self.stop = stop or threading.Event()
        self.controls = controls
        #: Only messages that failed or were skipped before, and folders that failed to open.
        self.retry_failed = retry_failed
        self.wave_faults = wave_faults or WaveFaults()
        self.sessions = Sessions()
        # Messages suspected of breaking the source connection, within one folder (see _narrow_down).
        self._suspects = Suspects()
        self._fetching: tuple[int, int, dict[int, MessageMeta]] | None = None
        # Failures counted when a folder attempt started, and messages failed as culprits (see
        # _forget_contribution): a retried attempt must not count the same failure twice.
        self._failed_mark: int | None = None
        self._culprits = 0
        self._existing: set[str] | None = None  # target folders known to exist (None: not asked yet)

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
        """Run ``action``, reconnecting after connection faults for as long as attempts make progress.

        A drop while the source sends bodies narrows the search for a message at fault instead
        (see ``resilience``): one that breaks the connection alone, the same way, on several fresh
        connections is recorded as failed and the run goes on without it.
        """
        Reconnecting(
            progress=lambda: self.stats.copied + self.stats.matched_by_content + self.stats.failed,
            drop=self._drop_sessions,
            narrow=self._narrow_down,
            pause=self._pause,
            on_reconnect=self._reconnecting,
            on_success=self.wave_faults.reached,
        ).run(what, action)

    def _reconnecting(self, what: str, problem: ProtocolError, delay: float) -> None:
        self.stats.reconnects += 1
        self.wave_faults.seen(self.entry.source, problem, final=False)
        self._event("warning", "reconnect", f"{what}: {problem}; reconnecting in {delay:g} s")

    def _pause(self, seconds: float) -> None:
        self.sleep(seconds)
        if self.stop.is_set():
            raise RunInterrupted("the run was asked to stop")

    def _backoff(self, seconds: float) -> None:
        self.stop.wait(seconds)  # a stop request ends the wait early

    def _narrow_down(self, exc: FetchConnectionLost) -> bool:
        """A drop mid-fetch: True when it was progress in finding the message at fault, which is
        recorded as failed once known."""
        known = len(self._suspects.failed)
        progress = self._suspects.narrow(exc)
        context = self._fetching
        if len(self._suspects.failed) == known or context is None:
            return progress
        folder_id, uidvalidity, metas = context
        meta = metas.get(exc.uids[0])
        if meta is None:
            return progress
        reason = culprit_reason(exc)
        self.store.record_unsent([unsent_row(folder_id, uidvalidity, meta, "failed", reason, self.run_id)])
        self.stats.failed += 1
        self._culprits += 1
        self._event("error", "message-failed", f"UID {meta.uid}: {reason}", folder=exc.folder)
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
            self._failed(exc, "target-refused-mailbox")
        except AuthError as exc:
            self._failed(exc, "login")
        except ProtocolError as exc:
            self._failed(exc, "retry-later" if exc.retryable else "protocol")
        except StoreError:
            raise  # the ledger can't be written (disk full, ...): not this mailbox's fault, the run stops
        except MigrationError as exc:
            self._failed(exc, "config")
        except Exception as exc:
            # A bug of ours or an unforeseen library error: this mailbox fails, saying so, and the run
            # goes on; never a mailbox left "running". The traceback goes to the run log (no locals).
            log.exception("%s: unexpected error", self.entry.source)
            self._failed(MigrationError(f"internal error: {type(exc).__name__}: {safe(str(exc))}"), "internal")
        finally:
            self._drop_sessions()
            stats.current_folder = ""
            stats.ended = time.time()
        if stats.error:
            self._event("error", "mailbox-failed", stats.error)
        return stats

    def _failed(self, exc: MigrationError, kind: str) -> None:
        self.stats.state, self.stats.error, self.stats.error_kind = MailboxState.FAILED, str(exc), kind
        self.wave_faults.seen(self.entry.source, exc, final=True)

    def _prepare(self) -> list[FolderMapping]:
        source = self._source()
        mappings = plan_folders(source.list_folders(), self.plan.folders, self._layout())
        # Folders are created when their source folder opens (_open_target_folder), so that one the
        # source refuses doesn't leave an empty copy on the target. Which exist is asked then, of a
        # target that a delta pass over an unchanged mailbox never logs in to.
        self._existing = None
        for mapping in mappings:
            if mapping.excluded is None:
                for note in mapping.notes:
                    self._event("warning", "folder-renamed", note, folder=mapping.source.display)
        return mappings

    def _layout(self) -> TargetLayout:
        """The target's folder layout: as the last pass that opened the target saw it (a delta pass
        then logs in to the target only if a folder has something to do), else asked and kept."""
        # Kept with the target's address and user: a plan pointed at another target asks again.
        where = f"{self.plan.target.address} {self.entry.target}\n"
        kept = self.store.target_layout(self.mailbox_id)
        if kept is not None and kept.startswith(where) and self.store.synced_folders(self.entry.source):
            return TargetLayout.from_json(kept[len(where) :])
        layout = self._target().layout()
        self.store.save_target_layout(self.mailbox_id, where + layout.to_json())
        return layout

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
            self._suspects.clear()
            self._fetching, self._failed_mark = None, None
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
        todo = [m for m in plan.todo if m.uid not in self._suspects.failed]
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
        if self._existing is None:
            self._existing = target.existing_folders()
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
        source.isolate(self._suspects.alone)
        try:
            copy_folder(ctx, todo, counters, on_batch)
        finally:
            on_batch()
            folder.report.copied += counters.copied

    def _report_failures(self, folder: _OpenFolder) -> None:
        failed_now = self.store.failed_in_run(folder.id, folder.state.uidvalidity, self.run_id)
        folder.report.failed = len(failed_now)
        for failed in failed_now:
            if failed.src_uid not in self._suspects.failed:  # those were reported when they happened
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
        """Count a folder's listing. A listing again after a reconnect replaces the earlier one."""
        stats = self.stats
        stats.messages_total += messages - report.source_messages
        stats.bytes_total += size - report.source_bytes
        if not report.listed:
            # Only the first listing: later ones also find what this run has copied since.
            stats.already_present += present
            report.already_present, report.listed = present, True
        stats.skipped -= report.skipped  # skipped again, and counted again, by this pass
        report.source_messages, report.source_bytes, report.skipped = messages, size, 0

    def _forget_contribution(self, report: FolderReport) -> None:
        """A folder pass tried again after a reconnect tries again the messages that failed in the
        earlier attempt (the target may take them now): they count again only if they fail again."""
        counted = self.stats.failed - self._culprits
        if self._failed_mark is not None:
            self.stats.failed -= counted - self._failed_mark
        self._failed_mark = self.stats.failed - self._culprits

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

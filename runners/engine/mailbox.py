"""One mailbox: map folders, then sync each one, reconnecting when a connection drops."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runners.connectors.base import SourceSession, TargetSession
from runners.engine.control import ControlWatcher
from runners.engine.pipeline import CopyContext, CopyCounters, MailboxFatal, copy_folder, unsent_row
from runners.engine.reconcile import resolve_pending, unclaimed_digests
from runners.engine.resilience import Reconnecting, Suspects, culprit_reason
from runners.engine.sessions import ConnectionCaps, capped, open_source, open_target
from runners.engine.stats import FolderReport, MailboxStats
from runners.engine.triage import triage, unchanged
from runners.engine.wave_faults import WaveFaults
from runners.errors import (
    AuthError,
    CommandError,
    FetchConnectionLost,
    MigrationError,
    ProtocolError,
)
from runners.folders import FolderMapping, parents_of, plan_folders
from runners.model import FolderState, MessageMeta, flag_text
from runners.plan.model import MailboxEntry, Plan
from runners.state.store import StateStore

log = logging.getLogger("cutover.engine")


class RunInterrupted(MigrationError):
    """The operator stopped the run; everything copied so far is in the ledger."""


class MailboxCancelled(MigrationError):
    """A cancel request for this mailbox (or its wave): stop after the batch, the rest waits for a rerun."""


@dataclass(slots=True)
class Sessions:
    source: SourceSession | None = None
    target: TargetSession | None = None


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
        self._poisoned = self._suspects.failed
        self._fetching: tuple[int, int, dict[int, MessageMeta]] | None = None
        # Failures counted when a folder attempt started, and messages failed as culprits (see
        # _forget_contribution): a retried attempt must not count the same failure twice.
        self._failed_mark: int | None = None
        self._culprits = 0
        self._existing: set[str] = set()  # target folders known to exist

    # -- sessions ------------------------------------------------------------------------------

    def _source(self) -> SourceSession:
        if self.sessions.source is None:
            sem = self.caps.semaphore(self.plan.source)
            self.sessions.source = capped(sem, lambda: open_source(self.plan.source, self.entry))
        return self.sessions.source

    def _target(self) -> TargetSession:
        if self.sessions.target is None:
            sem = self.caps.semaphore(self.plan.target)
            self.sessions.target = capped(sem, lambda: open_target(self.plan.target, self.entry))
        return self.sessions.target

    def _drop_sessions(self) -> None:
        if self.sessions.source is not None:
            self.sessions.source.close()
            self.caps.semaphore(self.plan.source).release()
        if self.sessions.target is not None:
            self.sessions.target.close()
            self.caps.semaphore(self.plan.target).release()
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
            self.stats.state = "paused"
            self.store.set_mailbox_state(self.mailbox_id, "paused")
            self._event("info", "paused", "paused on request, after the current batch")

        if not self.controls.checkpoint(self.entry.source, paused, abort=self.stop):
            self._event("info", "cancelled", "cancelled on request; the next run continues from here")
            raise MailboxCancelled("cancelled on request")
        if self.stop.is_set():
            raise RunInterrupted("the run was asked to stop")
        if self.stats.state == "paused":
            self.stats.state = "running"
            self.store.set_mailbox_state(self.mailbox_id, "running")
            self._event("info", "resumed", "resumed on request")

    def _event(self, level: str, kind: str, message: str, folder: str | None = None) -> None:
        getattr(log, level if level != "warning" else "warning")("%s: %s", self.entry.source, message)
        self.store.event(self.run_id, level, kind, message, mailbox=self.entry.source, folder=folder)

    # -- the job -------------------------------------------------------------------------------

    def run(self) -> MailboxStats:
        stats = self.stats
        stats.started = time.time()
        stats.state = "running"
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
            stats.state = "ok" if not (stats.failed or stats.skipped or _folder_errors(stats)) else "partial"
        except RunInterrupted:
            stats.state = "pending"
        except MailboxCancelled:
            stats.state = "cancelled"
        except MailboxFatal as exc:
            self._failed(exc, "target-refused-mailbox")
        except AuthError as exc:
            self._failed(exc, "login")
        except ProtocolError as exc:
            self._failed(exc, "retry-later" if exc.retryable else "protocol")
        except MigrationError as exc:
            self._failed(exc, "config")
        finally:
            self._drop_sessions()
            stats.current_folder = ""
            stats.ended = time.time()
        if stats.error:
            self._event("error", "mailbox-failed", stats.error)
        return stats

    def _failed(self, exc: MigrationError, kind: str) -> None:
        self.stats.state, self.stats.error, self.stats.error_kind = "failed", str(exc), kind
        self.wave_faults.seen(self.entry.source, exc, final=True)

    def _prepare(self) -> list[FolderMapping]:
        source, target = self._source(), self._target()
        folders = source.list_folders()
        mappings = plan_folders(
            folders,
            self.plan.folders,
            target_separator=target.separator,
            target_prefix=target.prefix,
            target_special=target.special_folders(),
        )
        # Folders are created when their source folder opens (_sync_folder), so that one the source
        # refuses doesn't leave an empty copy on the target.
        self._existing = target.existing_folders()
        for mapping in mappings:
            if mapping.excluded is None:
                for note in mapping.notes:
                    self._event("warning", "folder-renamed", note, folder=mapping.source.display)
        return mappings

    def _create(self, target: TargetSession, wire: str, existing: set[str]) -> None:
        """Create a folder as the source has it; parents only if the server insists on them.

        Creating parents up front would turn the source's \\Noselect placeholders into real,
        empty folders on the target.
        """
        if wire in existing or wire.upper() == "INBOX":
            return
        try:
            target.create_folder(wire)
        except CommandError:
            for parent in parents_of(wire, target.separator, target.prefix):
                if parent not in existing:
                    target.create_folder(parent)
                    existing.add(parent)
                    self.stats.folders_created += 1
            target.create_folder(wire)
        existing.add(wire)
        self.stats.folders_created += 1

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
        self._forget_contribution(report)
        if (
            self.retry_failed
            and not self.store.folder_needs_work(folder_id)
            and not self.store.folder_failed(folder_id)
        ):
            report.unchanged = True  # nothing failed here: a retry pass has nothing to do
            return
        if (
            isinstance(hint, FolderState)
            and unchanged(last, hint)
            and not self.store.folder_needs_work(folder_id)
        ):
            report.unchanged = True
            self._contribute(report, hint.messages, 0, hint.messages)
            return
        source, target = self._source(), self._target()
        found, lost = resolve_pending(self.store, target, self.mailbox_id, folder_id)
        self.stats.matched_by_content += found
        if found or lost:
            self._event(
                "info",
                "reconciled",
                f"interrupted APPENDs: {found} found on the target, {lost} to copy again",
                folder=mapping.source.display,
            )
        state, metas = source.list_messages(mapping.source)
        self._create(target, mapping.target_wire, self._existing)
        ledger = self.store.ledger(folder_id, state.uidvalidity)
        prematched = None
        uidvalidity_changed = self.store.supersede_other_uidvalidity(folder_id, state.uidvalidity)
        if uidvalidity_changed:
            self._event(
                "warning",
                "uidvalidity",
                f"source UIDVALIDITY changed to {state.uidvalidity}: matching by content against the target",
                folder=mapping.source.display,
            )
            prematched = unclaimed_digests(self.store, target, self.mailbox_id, mapping.target_wire, 1)
        plan = triage(metas, ledger, self.plan.target.max_message_bytes, retry_only=self.retry_failed)
        skipped, flag_changes = plan.skipped, plan.flag_changes
        # Messages that dropped the connection earlier in this run stay failed until the next run.
        todo = [m for m in plan.todo if m.uid not in self._poisoned]
        source_bytes = sum(m.size for m in metas if m.size > 0)
        self._contribute(report, len(metas), source_bytes, plan.present)
        if skipped:
            self.store.record_unsent(
                unsent_row(folder_id, state.uidvalidity, m, "skipped", reason, self.run_id)
                for m, reason in skipped
            )
            for m, reason in skipped:
                self._event("warning", "skipped", f"UID {m.uid}: {reason}", folder=mapping.source.display)
            report.skipped += len(skipped)
            self.stats.skipped += len(skipped)
        if flag_changes:
            target.set_flags(mapping.target_wire, [(uid, flags) for _, uid, flags in flag_changes])
            self.store.update_flags(
                folder_id, state.uidvalidity, [(k, flag_text(f)) for k, _, f in flag_changes]
            )
            self.stats.flags_synced += len(flag_changes)
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
            report.copied += counters.copied
        failed_now = self.store.query(
            "SELECT src_uid, reason FROM messages WHERE folder_id = ? AND uidvalidity = ? AND status = 'failed' "
            "AND run_id = ?",
            (folder_id, state.uidvalidity, self.run_id),
        )
        report.failed = len(failed_now)
        for row in failed_now:
            if row["src_uid"] not in self._poisoned:  # those were reported when they happened
                self._event(
                    "error",
                    "message-failed",
                    f"UID {row['src_uid']}: {row['reason']}",
                    folder=mapping.source.display,
                )
        if uidvalidity_changed:
            self.store.drop_superseded(folder_id)
        if not self.retry_failed:
            # A retry pass left new messages aside: recording this state would hide them from the next pass.
            self.store.folder_done(folder_id, state, source_bytes)
        else:
            self.store.folder_error(folder_id, None)

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
        """Per-folder target message counts for the end-of-run comparison (one STATUS per target folder)."""
        target = self.sessions.target
        if target is None:
            return
        counts: dict[str, int] = {}
        for mapping in mappings:
            if mapping.excluded is None and mapping.target_wire not in counts:
                try:
                    counts[mapping.target_wire] = target.folder_state(mapping.target_wire).messages
                except ProtocolError:
                    continue
        for report in self.stats.folders:
            report.target_messages = counts.get(report.target)


def _folder_errors(stats: MailboxStats) -> bool:
    return any(f.error for f in stats.folders)

"""One mailbox: map folders, then sync each one, reconnecting when a connection drops."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runners.connectors.base import NotingSource, SourceSession, TargetSession
from runners.connectors.ranged import RangedSource
from runners.engine import left_off
from runners.engine.control import ControlWatcher
from runners.engine.lanes import SPLIT_MIN_MESSAGES, Lane, LanePool, unit_floor, units
from runners.engine.pipeline import CopyContext, CopyCounters, batch_limits, copy_folder, unsent_row
from runners.engine.reconcile import resolve_pending, unclaimed_digests
from runners.engine.resilience import AppendFailed, Reconnecting, Suspects, culprit_reason, poison_reason
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
from runners.model import FolderInfo, FolderState, MessageMeta, TargetLayout, flag_text
from runners.plan.model import MailboxEntry, Plan
from runners.safe_text import safe
from runners.state.errors import StoreError
from runners.state.statuses import MailboxState, MessageStatus
from runners.state.store import MailboxProgress, StateStore

log = logging.getLogger("cutover.engine")
#: The live counters are written at most this often between batches (``_progress``).
PROGRESS_SECONDS = 0.5


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


class _LaneStopped(Exception):
    """Another lane of the mailbox failed, or the pool closes: this one stops after its batch."""


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
        lanes: int | Callable[[], int] = 1,
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
        #: This job's own source and target sessions (the extra lanes of ``_pool`` have theirs).
        self.lane = Lane()
        #: What a lane was copying when its source connection broke, by the error (``_narrow_down``).
        self._lost: dict[int, tuple[int, int, dict[int, MessageMeta]] | None] = {}
        # Messages suspected of breaking a source connection, within one folder (see _narrow_down);
        # shared by the lanes: a suspect is fetched alone on whichever lane copies it next.
        self._suspects = Suspects()
        #: Messages carried by an append the target kept failing, within one folder: appended alone
        #: until the one at fault is known (``_narrow_target``).
        self._poison = Suspects()
        #: Messages found at fault that way, recorded as failed once the attempt after settled their
        #: intents (an item the target made before failing is found, never recorded failed).
        self._poisoned: list[AppendFailed] = []
        #: Folders whose pending intents this job settled (those pending since are its own).
        self._settled: set[int] = set()
        #: Connections on each side this mailbox may use at most, asked when a folder is large enough
        #: to share (a wave's runner gives more to a mailbox that runs alone: ``wave.WavePass``).
        self.lanes: Callable[[], int] = lanes if callable(lanes) else lambda: lanes
        self._pool: LanePool[tuple[_OpenFolder, list[MessageMeta]]] | None = None
        #: Counters several lanes add to (``MailboxStats`` fields are plain ints).
        self._count_lock = threading.Lock()
        # Failures counted when a folder attempt started, and messages failed as culprits (see
        # _forget_contribution): a retried attempt must not count the same failure twice.
        self._failed_mark: int | None = None
        self._culprits = 0
        self._existing: set[str] | None = None  # target folders known to exist (None: not asked yet)
        self._progress_at = 0.0
        #: Whether a write showed this run's first copied messages yet (that one is not held back).
        self._shown_moving = False

    # -- sessions ------------------------------------------------------------------------------

    def _source(self, lane: Lane | None = None) -> SourceSession:
        lane = lane or self.lane
        if lane.source is None:
            lane.source = self.caps.open_source(self.plan.source, self.entry)
        return lane.source

    def _target(self, lane: Lane | None = None) -> TargetSession:
        lane = lane or self.lane
        if lane.target is None:
            lane.target = self.caps.open_target(self.plan.target, self.entry)
        return lane.target

    def _drop_sessions(self, lane: Lane | None = None) -> None:
        lane = lane or self.lane
        source, target = lane.source, lane.target
        lane.source = lane.target = None
        if source is not None:
            self.caps.close_source(self.plan.source, source)
        if target is not None:
            self.caps.close_target(self.plan.target, self.entry, target)

    def _retrying(self, what: str, action: Callable[[], None], lane: Lane | None = None) -> None:
        """Run ``action``, reconnecting after connection faults for as long as attempts make progress.

        A drop while the source sends bodies narrows the search for a message at fault instead
        (see ``resilience``): one that breaks the connection alone, the same way, on several fresh
        connections is recorded as failed and the run goes on without it.
        """
        lane = lane or self.lane
        Reconnecting(
            progress=lambda: self.stats.copied + self.stats.matched_by_content + self.stats.failed,
            drop=lambda: self._drop_sessions(lane),
            narrow=lambda exc: self._narrow_down(lane, exc),
            pause=self._pause,
            on_reconnect=self._reconnecting,
            on_success=self.wave_faults.reached,
        ).run(what, action)

    def _reconnecting(self, what: str, problem: ProtocolError, delay: float) -> None:
        with self._count_lock:
            self.stats.reconnects += 1
        self.wave_faults.seen(self.entry.source, problem, final=False)
        self._event("warning", "reconnect", f"{what}: {problem}; reconnecting in {delay:g} s")

    def _pause(self, seconds: float) -> None:
        self.sleep(seconds)
        if self.stop.is_set():
            raise RunInterrupted("the run was asked to stop")

    def _backoff(self, seconds: float) -> None:
        self.stop.wait(seconds)  # a stop request ends the wait early

    def _narrow_down(self, lane: Lane, exc: FetchConnectionLost | AppendFailed) -> bool:
        """A drop mid-fetch, or an append the target kept failing: True when it was progress in
        finding the message at fault, which is recorded as failed once known."""
        if isinstance(exc, AppendFailed):
            return self._narrow_target(exc)
        known = len(self._suspects.failed)
        progress = self._suspects.narrow(exc)
        if len(self._suspects.failed) == known:
            return progress
        # What the lane that lost its connection was copying (it may have closed since).
        context = self._lost.pop(id(exc), None) or lane.fetching
        if context is None or exc.uids[0] not in context[2]:
            return progress
        folder_id, uidvalidity, metas = context
        self._record_culprit(folder_id, uidvalidity, metas[exc.uids[0]], culprit_reason(exc), exc.folder)
        return True

    def _narrow_target(self, exc: AppendFailed) -> bool:
        """An append the target kept failing: True when it was progress in finding the message at
        fault. One found is recorded as failed by the next attempt (``_record_poisoned``), once its
        pending intent is settled: the target may have made it before failing."""
        known = len(self._poison.failed)
        progress = self._poison.narrow_append(exc, self.stats.copied + self.stats.matched_by_content)
        if len(self._poison.failed) != known:
            self._poisoned.append(exc)
        return progress

    def _record_poisoned(self, folder_id: int, display: str) -> None:
        """Record the messages found at fault by ``_narrow_target`` as failed in the target's words,
        unless settling their intents found them on the target after all."""
        for exc in [e for e in self._poisoned if e.folder_id == folder_id]:
            self._poisoned.remove(exc)
            meta = exc.metas[0]
            entry = self.store.ledger_for(folder_id, exc.uidvalidity, [meta.key]).get(meta.key)
            if entry is not None and entry.status == MessageStatus.COPIED:
                continue
            self._record_culprit(folder_id, exc.uidvalidity, meta, poison_reason(exc), display)

    def _record_culprit(
        self, folder_id: int, uidvalidity: int, meta: MessageMeta, reason: str, display: str
    ) -> None:
        """A message found at fault by narrowing (either side): failed in the ledger, with why."""
        self.store.record_unsent(
            [unsent_row(folder_id, uidvalidity, meta, MessageStatus.FAILED, reason, self.run_id)]
        )
        with self._count_lock:
            self.stats.failed += 1
            self._culprits += 1
        self._event("error", "message-failed", f"UID {meta.uid}: {reason}", folder=display)

    def _checkpoint(self, before_pause: Callable[[], None] = lambda: None) -> None:
        """Between batches and folders: honour a stop, a pause (wait here) or a cancel request.

        Every lane of the mailbox calls it; the first to see a pause records it, the first to go on
        records the resume. ``before_pause``: what a lane writes before it waits (its outcomes)."""
        if self.stop.is_set():
            raise RunInterrupted("the run was asked to stop")
        if self._pool is not None and self._pool.abort.is_set():
            raise _LaneStopped("another connection of this mailbox failed")
        if self.controls is None:
            return

        def paused() -> None:
            before_pause()
            with self._count_lock:
                if self.stats.state == MailboxState.PAUSED:
                    return
                self.stats.state = MailboxState.PAUSED
            self._progress(force=True)
            self.store.set_mailbox_state(self.mailbox_id, MailboxState.PAUSED)
            self._event("info", "paused", "paused on request, after the current batch")

        if not self.controls.checkpoint(self.entry.source, paused, abort=self.stop):
            raise MailboxCancelled("cancelled on request")
        if self.stop.is_set():
            raise RunInterrupted("the run was asked to stop")
        if self.stats.state == MailboxState.PAUSED:
            with self._count_lock:
                if self.stats.state != MailboxState.PAUSED:
                    return
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
            self._open_lanes_early(states)
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
            self._event("info", "cancelled", "cancelled on request; the next run continues from here")
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
            self._failed(
                MigrationError(f"internal error: {type(exc).__name__}: {safe(str(exc))}"), "internal"
            )
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
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
            self._poison.clear()
            self._poisoned.clear()
            self._lost.clear()
            self.lane.fetching, self._failed_mark = None, None
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
        """One folder pass, in named steps; retried whole after a reconnect (``_retrying``).

        The folder is listed a range of UIDs at a time where the source can (``RangedSource``),
        each range triaged against its own ledger rows and copied before the next is listed, so the
        pass holds one range in memory whatever the folder's size.
        """
        self._forget_contribution(report)
        if self._nothing_to_do(folder_id, last, hint, report):
            return
        source, target = self._source(), self._target()
        self._recover_interrupted(target, mapping, folder_id)
        self._record_poisoned(folder_id, mapping.source.display)
        state, listing = _listing(source, mapping.source)
        folder = _OpenFolder(mapping, folder_id, state, report)
        self._open_target_folder(target, mapping.target_wire)
        prematched, uidvalidity_changed = self._follow_uidvalidity(target, folder)
        self._restart_skipped(report)
        messages = source_bytes = present = 0
        try:
            for metas in listing:
                keys = [m.key for m in metas]
                plan = triage(
                    metas,
                    self.store.ledger_for(folder_id, state.uidvalidity, keys),
                    self.plan.target.max_message_bytes,
                    retry_only=self.retry_failed,
                    run_id=self.run_id,
                )
                del keys
                # Messages that dropped the connection earlier in this run stay failed until the next run.
                todo = [
                    m
                    for m in plan.todo
                    if m.uid not in self._suspects.failed and m.uid not in self._poison.failed
                ]
                self._record_left_off(folder, source, target, _carried(todo, metas, plan.flag_changes))
                messages += len(metas)
                source_bytes += sum(m.size for m in metas if m.size > 0)
                present += plan.earlier
                del metas
                self._contribute(report, messages, source_bytes, present)
                self._record_skipped(folder, plan.skipped)
                self._sync_flags(target, folder, plan.flag_changes)
                self._copy_todo(folder, todo, prematched)
                self._checkpoint()
            if self._pool is not None:
                self._pool.drain()
        except BaseException as exc:
            first = self._pool.settle() if self._pool is not None else None
            if isinstance(exc, _LaneStopped) and first is not None:
                raise first from None
            raise
        self._report_failures(folder)
        self._close_pass(folder, source_bytes, uidvalidity_changed)

    def _record_left_off(
        self, folder: _OpenFolder, source: SourceSession, target: TargetSession, todo: list[MessageMeta]
    ) -> None:
        """Name the flags these copies go without, and why (``runners.engine.left_off``)."""
        notes = (
            left_off.among(source.listing_notes(folder.mapping.source), todo)
            if isinstance(source, NotingSource)
            else []
        )
        if target.capabilities.imap_flags:
            notes += left_off.unsettable(todo)
        for note in notes:
            self._event("warning", "left-off", left_off.describe(note), folder=folder.display)

    def _copy_todo(
        self, folder: _OpenFolder, todo: list[MessageMeta], prematched: dict[bytes, list[str]] | None
    ) -> None:
        """Copy on this job's lane, or share a large ``todo`` with extra lanes (never a content match:
        its pool of target items is claimed in order, by one lane).

        A large ``todo`` is cut into units even when this mailbox may have one connection now: the
        mailboxes running beside it may finish first, and it then takes their connections for the
        units left (a wave's largest mailbox, often the last, doesn't finish alone on one connection).
        """
        ranged: object = self.lane.source  # extra lanes check the folder they open (RangedSource)
        lanes = self.lanes()
        floor = SPLIT_MIN_MESSAGES // 2
        if len(todo) >= SPLIT_MIN_MESSAGES:  # a unit holds a full batch at least (two units: a split)
            limits = batch_limits(self.plan.batch_messages, self.plan.batch_bytes, self._target())
            floor = unit_floor(todo, *limits)
        if (
            len(todo) < 2 * floor
            or self.plan.connections_per_mailbox == 1
            or prematched is not None
            or not isinstance(ranged, RangedSource)
        ):
            self._copy(self.lane, folder, todo, prematched)
            return
        if self._pool is None:
            self._pool = self._new_pool(lanes)
        self._pool.share(self.lane, [(folder, unit) for unit in units(todo, lanes, floor)])

    def _open_lanes_early(self, states: dict[str, FolderState | Exception]) -> None:
        """A first pass over a mailbox with a folder large enough to share: the extra lanes log in
        now, beside the first folder's listing, not after it (a delta pass waits for its work)."""
        large = any(isinstance(s, FolderState) and s.messages >= SPLIT_MIN_MESSAGES for s in states.values())
        ranged: object = self.lane.source
        if (
            not large
            or self._pool is not None
            or self.retry_failed
            or self.plan.connections_per_mailbox == 1
            or not isinstance(ranged, RangedSource)
            or self.store.synced_folders(self.entry.source)
        ):
            return
        self._pool = self._new_pool(self.lanes())
        self._pool.open_lanes()

    def _new_pool(self, lanes: int) -> LanePool[tuple[_OpenFolder, list[MessageMeta]]]:
        return LanePool(
            lanes - 1, self._open_lane, self._copy_unit, self._close_lane, wanted=lambda: self.lanes() - 1
        )

    def _open_lane(self) -> Lane | None:
        """An extra lane, if a connection slot is free on each side right now (else None)."""
        source = self.caps.try_open_source(self.plan.source, self.entry)
        if source is None:
            return None
        try:
            target = self.caps.try_open_target(self.plan.target, self.entry)
        except BaseException:
            self.caps.close_source(self.plan.source, source)
            raise
        if target is None:
            self.caps.close_source(self.plan.source, source)
            return None
        return Lane(source, target)

    def _close_lane(self, lane: Lane) -> None:
        """An extra lane ends (in its own thread): its sessions and its store connection go."""
        try:
            self._drop_sessions(lane)
        except ProtocolError:
            pass  # a broken connection is closed all the same
        finally:
            self.store.close_thread()

    def _copy_unit(self, lane: Lane, piece: tuple[_OpenFolder, list[MessageMeta]]) -> None:
        """One unit on a lane. An extra lane opens the folder first and checks it is the one the
        pass listed; any fault goes up to the folder pass, which settles every lane and retries."""
        folder, todo = piece
        if lane is not self.lane and lane.opened != (folder.id, folder.state.uidvalidity):
            source = self._source(lane)
            assert isinstance(source, RangedSource)
            now = source.open_folder(folder.mapping.source).uidvalidity
            if now != folder.state.uidvalidity:
                raise CommandError(
                    source.server,
                    f"EXAMINE {folder.mapping.source.raw_name}",
                    f"UIDVALIDITY is {now} now, {folder.state.uidvalidity} when the folder was listed",
                    retryable=True,
                )
            lane.opened = (folder.id, now)
        self._copy(lane, folder, todo, None)

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
            self._restart_skipped(report)
            self._contribute(report, hint.messages, 0, hint.messages)
            return True
        return False

    def _recover_interrupted(self, target: TargetSession, mapping: FolderMapping, folder_id: int) -> None:
        """Settle APPENDs a crash left pending, by the target's recovery strategy."""
        # Intents pending before this job first settled the folder are not its own (it has sent
        # nothing there yet): a holder that died left them, even one of this very run. Marked only
        # once settled: a recovery cut short by a lost connection is retried the same way.
        inherited = folder_id not in self._settled
        found, lost = resolve_pending(
            self.store, target, self.mailbox_id, folder_id, self.run_id, inherited=inherited
        )
        self._settled.add(folder_id)
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
        pool = unclaimed_digests(self.store, target, self.mailbox_id, folder.id, folder.mapping.target_wire)
        if target.capabilities.keeps_bytes:
            how = "matching by content against the target"
        elif pool is not None:
            how = (
                f"matching by the ledger: {sum(map(len, pool.values()))} earlier copies still on the "
                "target, by the SHA-256 of the source bytes they were made from"
            )
        else:
            how = "the target can't be matched by content: copying again"
        self._event(
            "warning",
            "uidvalidity",
            f"source UIDVALIDITY changed to {uidvalidity}: {how}",
            folder=folder.display,
        )
        return pool, True

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
        lane: Lane,
        folder: _OpenFolder,
        todo: list[MessageMeta],
        prematched: dict[bytes, list[str]] | None,
    ) -> None:
        """Copy ``todo`` on ``lane``, adding to the mailbox's counters and the store's progress per batch."""
        source, target = self._source(lane), self._target(lane)
        folder_id, state, mapping = folder.id, folder.state, folder.mapping
        counters, added = CopyCounters(), CopyCounters()
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
            self._progress_due,
            frozenset(self._poison.alone),
            frozenset(self._poison.tried),
        )

        def add_up() -> None:
            with self._count_lock:
                stats = self.stats
                stats.copied += counters.copied - added.copied
                stats.bytes_copied += counters.bytes_copied - added.bytes_copied
                stats.failed += counters.failed - added.failed
                stats.matched_by_content += counters.matched - added.matched
                folder.report.copied += counters.copied - added.copied
                added.copied, added.bytes_copied = counters.copied, counters.bytes_copied
                added.failed, added.matched = counters.failed, counters.matched

        def on_batch(flush: Callable[[], None]) -> None:
            add_up()  # the counters the next batch's transaction writes, when due (_progress_due)
            self._checkpoint(flush)

        if not todo:
            return
        lane.fetching = (folder_id, state.uidvalidity, {m.uid: m for m in todo})
        source.isolate(self._suspects.alone)
        try:
            copy_folder(ctx, todo, counters, on_batch)
        except FetchConnectionLost as exc:
            # Named as the culprit (or not) by the folder pass once every lane stopped: keep the
            # metadata of what this lane was copying for it, whether or not the lane stays open.
            self._lost[id(exc)] = lane.fetching
            raise
        finally:
            add_up()
            # Not forced: a mailbox of many folders (or a folder shared in many units) would write a
            # transaction per copy; the mailbox's end writes its counters anyway (WavePass.migrate).
            self._progress()

    def _progress_due(self) -> tuple[int, MailboxProgress] | None:
        """The live counters for a write the copy makes anyway: the first batch that copied something
        (a mailbox is seen moving at once, however small), then when ``PROGRESS_SECONDS`` have passed."""
        now = time.monotonic()
        stats = self.stats
        first_move = not self._shown_moving and (stats.copied or stats.failed)
        if not first_move and now - self._progress_at < PROGRESS_SECONDS:
            return None
        self._progress_at = now
        self._shown_moving = self._shown_moving or bool(first_move)
        return self.mailbox_id, stats.progress()

    def _progress(self, *, force: bool = False) -> None:
        """The live counters to the store (also the heartbeat): between batches and after a copy at
        most every ``PROGRESS_SECONDS`` (a write is a transaction, and an fsync); ``force`` on a pause."""
        now = time.monotonic()
        if not force and now - self._progress_at < PROGRESS_SECONDS:
            return
        self._progress_at = now
        self.store.mailbox_progress(self.mailbox_id, self.stats.progress())

    def _report_failures(self, folder: _OpenFolder) -> None:
        failed_now = self.store.failed_in_run(folder.id, folder.state.uidvalidity, self.run_id)
        folder.report.failed = len(failed_now)
        for failed in failed_now:
            if failed.src_uid not in self._suspects.failed and failed.src_uid not in self._poison.failed:
                # (those were reported when they happened)
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
        """Count a folder's listing so far. A listing again after a reconnect replaces the earlier
        one; ``present`` counts what earlier runs copied, the same on every listing of this run."""
        stats = self.stats
        with self._count_lock:
            stats.messages_total += messages - report.source_messages
            stats.bytes_total += size - report.source_bytes
            stats.already_present += present - report.already_present
        report.source_messages, report.source_bytes, report.already_present = messages, size, present
        report.listed = True

    def _restart_skipped(self, report: FolderReport) -> None:
        """A folder listed again skips its messages again, and counts them again."""
        with self._count_lock:
            self.stats.skipped -= report.skipped
        report.skipped = 0

    def _forget_contribution(self, report: FolderReport) -> None:
        """A folder pass tried again after a reconnect tries again the messages that failed in the
        earlier attempt (the target may take them now): they count again only if they fail again."""
        counted = self.stats.failed - self._culprits
        if self._failed_mark is not None:
            self.stats.failed -= counted - self._failed_mark
        self._failed_mark = self.stats.failed - self._culprits

    def _target_counts(self, mappings: list[FolderMapping]) -> None:
        """Per-folder target message counts for the end-of-run comparison, asked all at once."""
        target = self.lane.target
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


def _carried(
    todo: list[MessageMeta], metas: list[MessageMeta], flag_changes: list[tuple[str, str, tuple[str, ...]]]
) -> list[MessageMeta]:
    """The messages whose flags this pass gives the target: those it copies, and the copies whose
    flags it changes (``MailboxJob._sync_flags``)."""
    if not flag_changes:
        return todo
    changed = {key for key, _, _ in flag_changes}
    return todo + [m for m in metas if m.key in changed]


def _listing(source: SourceSession, folder: FolderInfo) -> tuple[FolderState, Iterator[list[MessageMeta]]]:
    """Open ``folder`` and list it: a range of UIDs at a time where the source can, else whole."""
    if isinstance(source, RangedSource):
        state = source.open_folder(folder)
        ranges = source.uid_ranges(folder, state)
        return state, (source.list_range(folder, uids) for uids in ranges)
    state, metas = source.list_messages(folder)
    return state, iter([metas])


def _folder_errors(stats: MailboxStats) -> bool:
    return any(f.error for f in stats.folders)

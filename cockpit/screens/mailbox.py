"""One mailbox: its folders (source vs target in the ledger) and every message not copied.

Its ledger is read with the snapshots (``Snapshot.detail``, in the poller's threads), never on the UI
thread: the view opens on its summary and fills its tables when its first snapshot arrives.

The header counts are cumulative (the ledger's, across passes and retries) and say how many folders
could not be opened or copied; Enter on such a folder shows the server's words, as for a message.
"""

from __future__ import annotations

import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Header, Static
from textual.worker import Worker, WorkerState, get_current_worker

from cockpit.actions import FAILURE_ACTIONS, bindings
from cockpit.format import MB, block, cell, state_label
from cockpit.screens.base import TextView, View
from cockpit.screens.dialogs import ReasonPrompt
from cockpit.widgets.fleet_table import FleetTable
from cockpit.widgets.keybar import KeyBar
from runners.headers import MessageHeaders
from runners.peek import MessageRef, message_headers
from runners.plan.model import Plan
from runners.state.mailbox_views import (
    FolderDetail,
    MailboxDetail,
    MailboxQuery,
    MessageAttempt,
    MessageIssue,
)
from runners.state.operators import operator_id
from runners.state.read_models.snapshot import Snapshot

FOLDER_COLUMNS = (
    ("folder", 24),
    ("target", 20),
    ("source msgs", 11),
    ("source MB", 9),
    ("copied", 7),
    ("copied MB", 9),
    ("skipped", 7),
    ("failed", 6),
    ("pending", 7),
    ("note", 40),
)
ISSUE_COLUMNS = (("folder", 20), ("UID", 7), ("size", 10), ("status", 8), ("tries", 5), ("reason", 70))


class MailboxView(View):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("y", "copy", "Copy")]
    read_at_once = True

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.crumb = source
        self.detail: MailboxDetail | None = None

    def reopen(self, source: str) -> None:
        """As a newly opened view of ``source``. The app keeps one closed view and opens it again
        (``CockpitApp.open_mailbox``): composing and styling its widgets was most of what Enter on a
        mailbox cost the UI thread (cockpit_bench.py). Nothing of the last mailbox stays on screen."""
        self.source = self.crumb = source
        self.detail = None
        if self.is_mounted:
            self.clear_flash()
            self.set_text("#summary", "")
            for table in self.query(FleetTable):
                table.clear()
                table.scroll_to(0, 0, animate=False, immediate=True)
            self.set_focus(self.query_one("#folders", FleetTable))

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("", id="summary", markup=False)
            # The line API (only the visible lines drawn): a DataTable filled again was most of
            # what Enter on a mailbox cost the UI thread at 160x48 (cockpit_bench.py).
            yield FleetTable(FOLDER_COLUMNS, id="folders")
            yield Static("Messages not copied (Enter: the server's words and the history)", id="issues-title")
            yield FleetTable(ISSUE_COLUMNS, id="issues")
        yield KeyBar()

    def query_rows(self) -> MailboxQuery:
        return MailboxQuery(source=self.source)

    def show(self, snapshot: Snapshot) -> None:
        if not self.query("#summary"):
            # Mounted, not composed yet: the snapshot asked for in on_mount can be that quick.
            self.call_after_refresh(self.show, snapshot)
            return
        row = snapshot.mailbox(self.source)
        if row is not None:
            error = f"  error: {row.error}" if row.error else ""
            done, total = row.done_of_total
            unopened = (
                f"  {row.folder_errors} folder{'s' if row.folder_errors > 1 else ''} could not be opened "
                "(Enter on it: the server's words)"
                if row.folder_errors
                else ""
            )
            summary = cell(
                f"{row.source} → {row.target}  wave {row.wave}  {state_label(row.state)}  "
                f"{done:,} of {total:,} messages copied  {row.failed} failed  {row.skipped} skipped{unopened}{error}"
            )
            self.set_text("#summary", summary)
        # The ledger of this mailbox comes in the snapshots read for this view (the poller's threads,
        # ``Snapshot.detail``): never read here, on the thread that answers the keys.
        detail = snapshot.detail if snapshot.query == self.query_rows() else None
        if detail is None or detail == self.detail:
            return
        before, self.detail = self.detail or MailboxDetail(self.source), detail
        # A table is given its rows again only when they changed.
        if detail.folders != before.folders:
            self._fill_folders(self.query_one("#folders", FleetTable), detail.folders)
        if detail.issues != before.issues:
            self._fill_issues(self.query_one("#issues", FleetTable), detail.issues)

    @staticmethod
    def _fill_folders(folders: FleetTable, rows: tuple[FolderDetail, ...]) -> None:
        shown: list[tuple[str, tuple[str, ...]]] = []
        for f in rows:
            note = f"✗ {f.error}" if f.error else (f"excluded: {f.excluded}" if f.excluded else "")
            cells = (
                f.source,
                f.target,
                "-" if f.source_messages is None else f"{f.source_messages:,}",
                "-" if f.source_bytes is None else f"{f.source_bytes / MB:,.1f}",
                f"{f.copied:,}",
                f"{f.copied_bytes / MB:,.1f}",
                str(f.skipped),
                str(f.failed),
                str(f.pending),
                note,
            )
            shown.append((f.source, tuple(cell(c) for c in cells)))
        folders.set_rows(shown, {f.source: "error" for f in rows if f.error})

    @staticmethod
    def _fill_issues(issues: FleetTable, rows: tuple[MessageIssue, ...]) -> None:
        shown: list[tuple[str, tuple[str, ...]]] = []
        for index, issue in enumerate(rows):
            issue_cells = (
                issue.folder,
                str(issue.uid),
                f"{issue.size:,}",
                issue.status,
                str(issue.attempts),
                (issue.reason or "").replace("\n", " "),
            )
            shown.append((str(index), tuple(cell(c) for c in issue_cells)))
        issues.set_rows(shown)

    def on_fleet_table_row_selected(self, event: FleetTable.RowSelected) -> None:
        if event.table.id == "issues" and self.detail is not None:
            self.cockpit.open_failure(self.source, self.detail.issues[int(event.key)])
        elif event.table.id == "folders" and self.detail is not None:
            folder = next((f for f in self.detail.folders if f.source == event.key), None)
            if folder is not None and folder.error:
                self.app.push_screen(FolderFailureView(self.source, folder))

    def action_copy(self) -> None:
        if self.detail is None:
            return
        lines = [f"{i.folder} UID {i.uid} {i.size} bytes {i.status}: {i.reason}" for i in self.detail.issues]
        self.app.copy_to_clipboard("\n".join([self.source, *lines]))  # OSC 52: works over SSH and tmux
        self.notify("copied the mailbox's failures to the clipboard")


class FolderFailureView(TextView):
    """A folder the last pass could not open or copy: the server's words verbatim; ``y`` copies them."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("y", "copy", "Copy")]
    text_id = "failure"

    def __init__(self, source: str, folder: FolderDetail) -> None:
        super().__init__()
        self.source = source
        self.folder = folder
        self.crumb = folder.source

    def text(self) -> str:
        f = self.folder
        return (
            f"mailbox   {self.source}\nfolder    {f.source}\ntarget    {f.target}\n"
            f"copied    {f.copied:,} (failed {f.failed}, skipped {f.skipped}, pending {f.pending})\n\n"
            f"what happened, in the server's own words:\n{f.error or '-'}\n\n"
            "A rerun of the wave (or F, retry failed items) tries the folder again."
        )


class FailureView(TextView):
    """One message that was not copied: where it is, what was tried, the server's words verbatim.

    Its Subject, From, Date and Message-ID are read from the source when the view opens (the ledger
    keeps no headers), in a thread worker: the view shows "(reading from the source…)" until they
    arrive, or the reason they could not be read. The attempt history comes from the state store and
    follows the polls, so a retry started with ``t`` shows up here.

    ``t`` retries its mailbox's failed items (a detached runner), ``s`` records a decision not to
    copy it, with a reason; both are hidden and refused in read-only mode.
    """

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), *bindings(FAILURE_ACTIONS)]
    text_id = "failure"

    def __init__(self, source: str, issue: MessageIssue) -> None:
        super().__init__()
        self.source = source
        self.issue = issue
        self.crumb = f"UID {issue.uid}"
        #: The source's headers, or why they could not be read; None while they are being read.
        self.headers: MessageHeaders | str | None = None
        self.history: tuple[MessageAttempt, ...] | None = None

    def on_mount(self) -> None:
        i = self.issue
        ref = MessageRef(i.source_name or i.folder, i.uid, i.key or str(i.uid), i.uidvalidity)
        self._read_headers(self.cockpit.plan, ref)

    @work(thread=True, exit_on_error=False, group="failure-headers")
    def _read_headers(self, plan: Plan, ref: MessageRef) -> MessageHeaders | str:
        # Runs in a thread: no widget is touched here; the result arrives in on_worker_state_changed.
        # The network wait itself is in a daemon thread: leaving the view or quitting cancels this
        # worker at once instead of waiting out a stalled source's timeout.
        result: list[MessageHeaders | str] = []

        def read() -> None:
            try:
                result.append(message_headers(plan, self.source, ref))
            except Exception as error:  # message_headers returns errors as text; this is the unforeseen
                result.append(f"{type(error).__name__}: {error}")

        reader = threading.Thread(target=read, name="failure-headers", daemon=True)
        reader.start()
        worker = get_current_worker()
        while reader.is_alive() and not worker.is_cancelled:
            reader.join(0.1)
        return result[0] if result else "(not read: the view was closed)"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "failure-headers":
            return
        if event.state == WorkerState.SUCCESS and isinstance(worker.result, MessageHeaders | str):
            self.headers = worker.result
        elif event.state == WorkerState.ERROR:
            self.headers = f"{type(worker.error).__name__}: {worker.error}"
        else:
            return
        self._redraw()

    def show(self, snapshot: Snapshot) -> None:
        if self._load_history():
            self._redraw()

    def _load_history(self) -> bool:
        """Read the attempts (one index lookup); True when they changed."""
        i, store = self.issue, self.cockpit.store
        key, validity = i.key or None, i.uidvalidity or None
        history = store.message_history(self.source, i.folder, i.uid, key=key, uidvalidity=validity)
        changed, self.history = history != self.history, history
        return changed

    def _redraw(self) -> None:
        if self.is_mounted:
            self.query_one(f"#{self.text_id}", Static).update(block(self.text()))

    def text(self) -> str:
        i = self.issue
        if self.history is None:
            self._load_history()
        return (
            f"mailbox   {self.source}\nfolder    {cell(i.folder)}\nUID       {i.uid}\nsize      {i.size:,} bytes\n"
            f"date      {i.internaldate or '-'}\n{self._header_lines()}"
            f"status    {i.status} after {i.attempts} attempt(s)\n\n"
            f"what happened, in the server's own words:\n{i.reason or '-'}\n\n"
            f"attempts, oldest first:\n{self._history_lines()}\n\n"
            "A rerun of the wave tries failed and skipped messages again."
        )

    def _header_lines(self) -> str:
        h = self.headers
        if h is None:
            return "subject   (reading from the source…)\n"
        if isinstance(h, str):
            return f"subject   (could not read from the source: {h})\n"
        fields = (("subject", h.subject), ("from", h.sender), ("sent", h.date), ("msg-id", h.message_id))
        return "".join(f"{label:<10}{'(none)' if value is None else value}\n" for label, value in fields)

    def _history_lines(self) -> str:
        if not self.history:
            return "  (none recorded)"
        return "\n".join(
            f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(a.at))}  "
            f"{'run ' + str(a.run_id) if a.run_id is not None else 'operator'}  {a.status:<8} "
            + (a.reason or "-").replace("\n", " ")
            for a in self.history
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.cockpit.read_only and action in ("retry_message", "skip_message"):
            return False
        return True

    def action_retry_message(self) -> None:
        if self.cockpit.read_only:
            return
        self.cockpit.action_retry_failed()

    def action_skip_message(self) -> None:
        if self.cockpit.read_only:
            return
        i = self.issue

        def record(reason: str | None) -> None:
            if not reason:
                self.notify("no reason given: nothing recorded", severity="warning")
                return
            who = operator_id()
            count = self.cockpit.store.waive_message(self.source, i.folder, i.uid, reason, who)
            if count:
                what = f"skip of {i.folder} UID {i.uid}: {reason}"
                self.cockpit.store.record_operator_action(who, what, mailbox=self.source)
            self.notify("recorded: not copied" if count else "nothing to skip: it is no longer failed")
            self.app.pop_screen()

        self.app.push_screen(ReasonPrompt(f"Skip {i.folder} UID {i.uid} of {self.source}: why?"), record)

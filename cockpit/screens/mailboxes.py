"""Mailboxes: one row per mailbox, diffed by key on each snapshot; filter "/", default "not OK".

The table holds a window of the list (``PAGE`` rows, a few screens), read by keyset from an anchor
mailbox (``runners.state.mailbox_pages``): when the cursor comes within a screen of the window's end
the window moves on from a screen above the cursor, near its top it moves back half a window, and
Home/End read the first or last window. So a fleet of 100,000 costs each key and each poll the
window, never the whole list; filtering and sorting run in SQL over all of it.

The counts are cumulative (the ledger's: copied of what the source holds, across passes and retries).
The mailbox column stays put while ←/→ scroll the rest; the error takes the spare width, and the
detail line under the table shows the cursor's row whole (wrapped), so nothing needs scrolling
character by character; ``ctrl+w`` widens the error column instead.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Input, Static

from cockpit.format import ago, bar, count, percent, state_label, tone
from cockpit.screens.base import View
from cockpit.widgets.fleet_table import FleetTable
from cockpit.widgets.keybar import KeyBar
from runners.state.mailbox_views import MailboxQuery, MailboxRow
from runners.state.read_models.snapshot import Snapshot

#: Rows the table holds: the window of the list read, formatted and diffed on every poll (drawing costs
#: only the visible lines); the cursor moving near its ends moves it (keyset, from an anchor mailbox).
PAGE = 120

COLUMNS = (
    ("mailbox", 26),
    ("wave", 10),
    ("state", 11),
    ("progress", 13),
    ("messages", 13),
    ("msg/s", 6),
    ("failed", 6),
    ("skipped", 7),
    ("folder", 12),
    ("active", 6),
    ("error", 20),  # the server's words: the spare width, the detail line, or ctrl+w
)
NOT_OK = "!ok"


class MailboxesView(View):
    crumb = "mailboxes"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
        Binding("s", "sort", "Sort"),
    ]

    # Set by ``reopen`` (as a new view: a kept one is opened again the same way).
    filter: str
    sort_key: str
    _previous: dict[str, int]
    _rows: dict[str, MailboxRow]
    #: The window: from this mailbox on (None: the first), or ``_back`` rows before it (or the end).
    _start: str | None
    _back: int
    #: End was pressed: the cursor goes to the last row once the last window is read.
    _to_end: bool

    def __init__(self, wave: str | None = None) -> None:
        super().__init__()
        self.wave = wave
        self.reopen()
        #: Set while a new filter narrows the last snapshot's rows at once (``_refilter``).
        self._narrowing = False

    def reopen(self, filter_text: str | None = None) -> None:
        """As a newly opened view: ``filter_text`` (None: the default), sorted by mailbox, from the first
        row. The app keeps a closed view and opens it again (``CockpitApp.open_mailboxes``): building
        the screen cost more than drawing it."""
        # The default filter shows what needs attention; "/" then Enter on an empty line shows all.
        self.filter = NOT_OK if filter_text is None else filter_text
        self.sort_key = "mailbox"
        self._previous, self._rows = {}, {}
        self._start, self._back, self._to_end = None, 0, False
        if self.is_mounted:
            self.clear_flash()
            box = self.query_one("#filter", Input)
            box.display, box.value = False, ""
            table = self.query_one("#mailboxes", FleetTable)
            table.clear()  # this view's rows come with its snapshot (on_screen_resume)
            table.scroll_to(0, 0, animate=False, immediate=True)
            self.set_focus(table)
            self._count()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter: text, or !ok (needs attention); Enter applies; Esc closes (again: clears)",
            id="filter",
        )
        yield Static("", id="filter-label")
        yield FleetTable(COLUMNS, id="mailboxes", frozen=1, on_cursor=self._cursor_moved, on_jump=self._jump)
        yield Static("", id="row-detail", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        # Not the (hidden) filter box: keys are commands until "/" is pressed. Now, not at the loop's
        # next turn (focus() is deferred): the first paint shows the focused cursor, not the blurred one.
        self.set_focus(self.query_one("#mailboxes", FleetTable))
        self._count()

    def _count(
        self, shown: int = 0, matching: int | None = None, total: int | None = None, start: str | None = None
    ) -> None:
        """ "mailboxes of wave pilot, filter …: 4 of 50": ``total`` is the wave's own when one is shown."""
        label = "needs attention (not OK)" if self.filter == NOT_OK else (self.filter or "all")
        wave = f" of wave {self.wave}" if self.wave else ""
        counts = ""
        if total is not None:
            counts = f": {'counting…' if matching is None else f'{matching:,}'} of {total:,}"
            if start is not None:
                counts += f", {shown:,} shown from {start}"
            elif matching is not None and shown < matching:
                counts += f", first {shown:,} shown"
        self.set_text("#filter-label", f"mailboxes{wave}, filter {label}{counts}")

    @staticmethod
    def first_window(wave: str | None = None) -> MailboxQuery:
        """What a newly opened view reads first (its default filter, from the first row)."""
        return MailboxQuery(wave=wave, attention=True, order="mailbox", limit=PAGE)

    def query_rows(self) -> MailboxQuery:
        return MailboxQuery(
            wave=self.wave,
            text="" if self.filter == NOT_OK else self.filter,
            attention=self.filter == NOT_OK,
            order=self.sort_key,
            limit=PAGE,
            start=self._start,
            back=self._back,
        )

    def _matches(self, row: MailboxRow) -> bool:
        if self.wave and row.wave != self.wave:
            return False
        if self.filter == NOT_OK:
            return not row.ok  # running and paused mailboxes are not ok either
        needle = self.filter.lower()
        return (
            not needle or needle in row.source.lower() or needle in row.state or needle in row.target.lower()
        )

    def show(self, snapshot: Snapshot) -> None:
        if not self._narrowing and not self._holds_ours(snapshot.query):
            # Read for another view or filter before this one's (the overview's: no rows; an older,
            # narrower filter's: a few): showing them would empty the table or move the cursor under
            # the keys typed meanwhile. This view's own rows come next.
            return
        seconds = max(self.cockpit.snapshot_interval, 1e-3)
        # The poller already filtered, sorted and limited in SQL; checking again here narrows a snapshot
        # read just before the filter changed (a wider filter waits for the next poll, which _refilter pokes).
        rows = [r for r in snapshot.mailboxes if self._matches(r)][:PAGE]
        query = snapshot.query
        if not self._narrowing and query is not None:
            if query.back:  # a move back (or to the end) is read: the window now starts where it landed
                self._start, self._back = snapshot.window_start, 0
            elif query.start is not None and not rows:  # its first mailbox left the filter: start over
                self._start = None
                self.cockpit.poke_rows()
        self._count(len(rows), snapshot.matching, snapshot.scope_total or snapshot.total, self._start)
        table = self.query_one("#mailboxes", FleetTable)
        table.set_rows(
            [(row.source, self._cells(row, self._rate(row, seconds))) for row in rows],
            {
                row.source: tone(row.state, row.failed, row.skipped, bool(row.error or row.folder_errors))
                for row in rows
            },
        )
        self._rows = {row.source: row for row in rows}
        if self._to_end and query is not None and query.back and not self._narrowing:
            self._to_end = False
            table.move_cursor(table.row_count - 1)
        self._detail(table.cursor_key)
        self._previous = {r.source: r.messages_done for r in snapshot.mailboxes}

    def _holds_ours(self, query: MailboxQuery | None) -> bool:
        """Were these rows read for a query at least as wide as ours (``_matches`` narrows them)?"""
        if query is None:
            return False
        mine = self.query_rows()
        return (
            query.text in ("", mine.text)
            and query.source in (None, mine.source)
            and query.wave in (None, mine.wave)
            and (mine.attention or not query.attention)
            # Another window's rows would move the cursor's row under the keys typed meanwhile.
            and (query.start, query.back, query.order) == (mine.start, mine.back, mine.order)
        )

    def _cursor_moved(self, key: str | None) -> None:
        """The detail line follows the cursor; near the window's ends the window moves (``_move``)."""
        self._detail(key)
        table = self.query_one("#mailboxes", FleetTable)
        screen = table.page_rows
        if table.row_count >= PAGE and table.cursor_row >= table.row_count - screen:
            # More may follow: the window from a screen above the cursor (its row stays put on screen).
            self._move(table.keys[max(0, table.cursor_row - screen)], 0)
        elif self._start is not None and table.cursor_row < screen and self._back == 0 and table.row_count:
            self._move(self._start, PAGE // 2)

    def _jump(self, row: int) -> None:
        """Home: the first window; End: the last (the cursor on its last row once read)."""
        if row == 0:
            self._move(None, 0)
        else:
            self._to_end = True
            self._move(None, PAGE)

    def _move(self, start: str | None, back: int) -> None:
        if (start, back) != (self._start, self._back):
            self._start, self._back = start, back
            self.cockpit.poke_rows()

    def _detail(self, key: str | None) -> None:
        """The cursor's mailbox whole, wrapped: its counts, folders not opened and the server's words."""
        row = self._rows.get(key) if key else None
        text = ""
        if row is not None:
            done, total = row.done_of_total
            parts = [f"{row.source} → {row.target}: {state_label(row.state)}, {done:,} of {total:,} copied"]
            if row.failed or row.skipped:
                parts.append(f"{row.failed} failed, {row.skipped} skipped")
            if row.folder_errors:
                parts.append(f"{row.folder_errors} folder(s) could not be opened")
            text = "; ".join(parts) + (f"\nerror: {row.error}" if row.error else "")
        self.set_text("#row-detail", text)

    def _rate(self, row: MailboxRow, seconds: float) -> float:
        return max(row.messages_done - self._previous.get(row.source, row.messages_done), 0) / seconds

    @staticmethod
    def _cells(row: MailboxRow, rate: float) -> tuple[str, ...]:
        done, of = row.done_of_total
        total = f"{count(done)}/{count(of)}"
        return (
            row.source,
            row.wave,
            state_label(row.state),
            f"{bar(row.progress, 8)} {percent(row.progress)}",
            total,
            f"{rate:.0f}",
            str(row.failed),
            str(row.skipped),
            row.current_folder or "",
            ago(row.updated),
            row.error or "",  # FleetTable draws a newline (any control character) as a space
        )

    def selected_source(self) -> str | None:
        """The mailbox under the cursor, if any."""
        return self.query_one("#mailboxes", FleetTable).cursor_key

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = "" if self.filter == NOT_OK else self.filter
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.filter = event.value.strip()
        event.input.display = False
        # Now, not at the next turn of the loop (focus() is deferred): an Enter typed right after
        # this one opens the mailbox instead of submitting the hidden filter box again.
        self.set_focus(self.query_one("#mailboxes", FleetTable))
        self._refilter()

    def _refilter(self) -> None:
        self._start, self._back, self._to_end = None, 0, False  # a new list: from its first row
        self.cockpit.poke_rows()
        self._count()
        if self.cockpit.snapshot is not None:
            self._narrowing = True
            try:
                self.show(self.cockpit.snapshot)
            finally:
                self._narrowing = False

    def action_back(self) -> None:
        """Esc: close the filter box, then clear the filter, then go back (k9s)."""
        box = self.query_one("#filter", Input)
        if box.display:
            box.display = False
            self.set_focus(self.query_one("#mailboxes", FleetTable))
        elif self.filter not in ("", NOT_OK):
            self.filter = NOT_OK
            self._refilter()
        else:
            self.app.pop_screen()

    def action_sort(self) -> None:
        order = ("mailbox", "failed", "progress")
        self.sort_key = order[(order.index(self.sort_key) + 1) % len(order)]
        self.notify(f"sorted by {self.sort_key}")
        self._refilter()

    def on_fleet_table_row_selected(self, event: FleetTable.RowSelected) -> None:
        self.cockpit.open_mailbox(event.key)

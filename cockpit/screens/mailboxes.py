"""Mailboxes: one row per mailbox, diffed by key on each snapshot; filter "/", default "not OK"."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Input, Static

from cockpit.format import ago, bar
from cockpit.screens.base import View
from cockpit.widgets.fleet_table import FleetTable
from cockpit.widgets.keybar import KeyBar
from runners.state.mailbox_reads import MailboxQuery, MailboxRow
from runners.state.read_models.snapshot import Snapshot

#: Rows listed at most (many screens); the rest is counted, and "/" narrows it. Drawing costs only the visible
#: lines, but every listed row is read, formatted and diffed twice a second.
MAX_ROWS = 500

COLUMNS = (
    ("mailbox", 30),
    ("wave", 10),
    ("state", 9),
    ("progress", 15),
    ("messages", 15),
    ("msg/s", 6),
    ("failed", 6),
    ("skipped", 7),
    ("folder", 14),
    ("active", 6),
    ("error", 100),  # the server's words: ←/→ reach them at any width
)
NOT_OK = "!ok"


class MailboxesView(View):
    crumb = "mailboxes"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
        Binding("s", "sort", "Sort"),
    ]

    def __init__(self, wave: str | None = None) -> None:
        super().__init__()
        self.wave = wave
        # The default filter shows what needs attention; "/" then Enter on an empty line shows all.
        self.filter = NOT_OK
        self.sort_key = "mailbox"
        self._previous: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter: text, or !ok (needs attention); Enter applies, Esc clears", id="filter"
        )
        yield Static("", id="filter-label")
        yield FleetTable(COLUMNS, id="mailboxes")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one(
            "#mailboxes", FleetTable
        ).focus()  # not the (hidden) filter box: keys are commands until "/" is pressed
        self._count()

    def _count(self, shown: int = 0, matching: int | None = None, total: int | None = None) -> None:
        label = "needs attention (not OK)" if self.filter == NOT_OK else (self.filter or "all")
        wave = f" of wave {self.wave}" if self.wave else ""
        counts = ""
        if matching is not None and total is not None:
            counts = f": {matching:,} of {total:,}" + (f", first {shown:,} shown" if shown < matching else "")
        self.query_one("#filter-label", Static).update(Text(f"mailboxes{wave}, filter {label}{counts}"))

    def query_rows(self) -> MailboxQuery:
        return MailboxQuery(
            wave=self.wave,
            text="" if self.filter == NOT_OK else self.filter,
            attention=self.filter == NOT_OK,
            order=self.sort_key,
            limit=MAX_ROWS,
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
        seconds = max(self.cockpit.snapshot_interval, 1e-3)
        # The poller already filtered, sorted and limited in SQL; checking again here narrows a snapshot
        # read just before the filter changed (a wider filter waits for the next poll, which _refilter pokes).
        rows = [r for r in snapshot.mailboxes if self._matches(r)][:MAX_ROWS]
        self._count(len(rows), snapshot.matching, snapshot.total)
        self.query_one("#mailboxes", FleetTable).set_rows(
            [(row.source, self._cells(row, self._rate(row, seconds))) for row in rows]
        )
        self._previous = {r.source: r.messages_done for r in snapshot.mailboxes}

    def _rate(self, row: MailboxRow, seconds: float) -> float:
        return max(row.messages_done - self._previous.get(row.source, row.messages_done), 0) / seconds

    @staticmethod
    def _cells(row: MailboxRow, rate: float) -> tuple[str, ...]:
        total = f"{row.messages_done:,}/{row.messages_total:,}"
        return (
            row.source,
            row.wave,
            row.state,
            f"{bar(row.progress, 8)} {row.progress:4.0%}",
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
        self.query_one("#mailboxes", FleetTable).focus()
        self._refilter()

    def _refilter(self) -> None:
        self.cockpit.poke()
        self._count()
        if self.cockpit.snapshot is not None:
            self.show(self.cockpit.snapshot)

    def action_back(self) -> None:
        """Esc: close the filter box, then clear the filter, then go back (k9s)."""
        box = self.query_one("#filter", Input)
        if box.display:
            box.display = False
            self.query_one("#mailboxes", FleetTable).focus()
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

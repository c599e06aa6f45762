"""Audit trail: every operator action the state store keeps (``StateStore.audit_trail``, the same list
as ``cutover audit``): who (OS user, host, SSH client), when, the action and its exact parameters.

Scoped to one wave (``:audit pilot``, the palette) or all; ``/`` narrows by text. The detail line
under the table shows the cursor's entry whole, its parameters as JSON. Operator actions are few and
reading them all costs several queries, so the list is re-read every few seconds, not every poll.
"""

from __future__ import annotations

import json
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Header, Input, Static

from cockpit.screens.base import FilteredView
from cockpit.widgets.fleet_table import FleetTable
from cockpit.widgets.keybar import KeyBar
from runners.state.read_models.snapshot import Snapshot
from runners.state.wave_step_rows import AuditEntry

COLUMNS = (
    ("when", 14),
    ("who", 18),
    ("action", 11),
    ("wave", 8),
    ("detail", 20),  # the spare width; the detail line has it whole, parameters too
)
#: Seconds between two reads of the trail while the view is shown.
REREAD = 3.0


def when(at: float) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(at))


def params_text(entry: AuditEntry) -> str:
    return json.dumps(entry.params, sort_keys=True, default=str) if entry.params else ""


def entry_text(entry: AuditEntry) -> str:
    """The whole entry on one (wrapped) line: the detail line and the filter read this."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
    where = f" {entry.mailbox}:" if entry.mailbox else ""
    params = params_text(entry)
    return f"{stamp} {entry.who} {entry.action} (wave {entry.wave or '-'}){where} {entry.detail}" + (
        f"; parameters {params}" if params else ""
    )


class AuditView(FilteredView):
    crumb = "audit"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, wave: str | None = None) -> None:
        super().__init__()
        self.wave = wave
        self.filter = ""
        self.entries: list[AuditEntry] = []
        self._read_at: float | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter: text (who, action, parameters); Enter applies, Esc clears", id="filter"
        )
        yield Static("", id="filter-label")
        yield FleetTable(COLUMNS, id="audit", on_cursor=self._detail)
        yield Static("", id="row-detail", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#audit", FleetTable).focus()
        self.reread()

    def show(self, snapshot: Snapshot) -> None:
        if self._read_at is None or time.monotonic() - self._read_at >= REREAD:
            self.reread()

    def reread(self) -> None:
        """Read the trail now (oldest first in the store; shown newest first)."""
        self._read_at = time.monotonic()
        self.entries = list(reversed(self.cockpit.store.audit_trail(self.wave)))
        self._fill()

    def _shown(self) -> list[tuple[str, AuditEntry]]:
        needle = self.filter.lower()
        keyed = [(f"{e.at!r}#{i}", e) for i, e in enumerate(self.entries)]
        return [(k, e) for k, e in keyed if not needle or needle in entry_text(e).lower()]

    def _fill(self) -> None:
        shown = self._shown()
        scope = f" of wave {self.wave}" if self.wave else ""
        label = f", filter {self.filter!r}" if self.filter else ""
        self.set_text(
            "#filter-label",
            f"audit trail{scope}{label}: {len(shown):,} of {len(self.entries):,} actions, newest first",
        )
        table = self.query_one("#audit", FleetTable)
        table.set_rows([(key, self._cells(e)) for key, e in shown])
        self._detail(table.cursor_key)

    @staticmethod
    def _cells(e: AuditEntry) -> tuple[str, ...]:
        what = f"{e.mailbox + ': ' if e.mailbox else ''}{e.detail}  {params_text(e)}".rstrip()
        return (when(e.at), e.who, e.action, e.wave or "-", what)

    def _detail(self, key: str | None) -> None:
        entry = dict(self._shown()).get(key) if key else None
        text = (
            entry_text(entry) if entry else "no operator action recorded" + (" here" if self.filter else "")
        )
        self.set_text("#row-detail", text)

    def filter_focus(self) -> Widget:
        return self.query_one("#audit", FleetTable)

    def filter_changed(self) -> None:
        self._fill()

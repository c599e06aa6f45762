"""Log: a bounded live tail of the run's events (the full log stays on disk in the state dir)."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, RichLog, Static

from cockpit.format import cell
from cockpit.screens.base import View
from cockpit.widgets.keybar import KeyBar
from runners.state.read_models.snapshot import Snapshot

MAX_LINES = 1000


class LogView(View):
    crumb = "log"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self._last_id = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            f"the last {MAX_LINES:,} events; every event stays in the state store and each runner's full "
            f"log in {self.cockpit.plan.state_dir / 'logs'}",
            id="log-where",
            markup=False,
        )
        yield RichLog(id="log", max_lines=MAX_LINES, wrap=True, markup=False)
        yield KeyBar()

    def show(self, snapshot: Snapshot) -> None:
        log = self.query_one("#log", RichLog)
        for event in snapshot.events:
            if event.id <= self._last_id:
                continue
            self._last_id = event.id
            stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
            where = " ".join(x for x in (event.mailbox, event.folder) if x)
            log.write(cell(f"{stamp} {event.level:<7} {where + ': ' if where else ''}{event.message}"))

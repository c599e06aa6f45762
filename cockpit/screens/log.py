"""Log: a bounded live tail of the run's events and the operators' actions (who did what, when); the
full log stays on disk in the state dir. ``/`` filters; the tail follows new lines until the operator
scrolls up, and follows again at the bottom (End)."""

from __future__ import annotations

import time
from collections import deque

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Header, Input, RichLog, Static

from cockpit.format import cell
from cockpit.screens.base import FilteredView
from cockpit.widgets.keybar import KeyBar
from runners.state.mailbox_views import Event
from runners.state.read_models.snapshot import Snapshot

MAX_LINES = 1000


def event_line(event: Event) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
    where = " ".join(x for x in (event.mailbox, event.folder) if x)
    return cell(f"{stamp} {event.level:<7} {where + ': ' if where else ''}{event.message}")


class LogView(FilteredView):
    crumb = "log"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter"),
        Binding("end", "follow", "Follow"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._last_id = 0
        self.filter = ""
        #: Every line received (bounded), so a new filter can be applied to what was already shown.
        self.lines: deque[str] = deque(maxlen=MAX_LINES)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: text; Enter applies, Esc clears", id="filter")
        yield Static(self._where(), id="log-where", markup=False)
        yield RichLog(id="log", max_lines=MAX_LINES, wrap=True, markup=False, auto_scroll=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#log", RichLog).focus()

    def _where(self) -> str:
        shown = f"lines matching {self.filter!r} of " if self.filter else ""
        return (
            f"{shown}the last {MAX_LINES:,} events, newest at the bottom (scrolled up, End follows again); "
            f"all stay in the state store, each runner's full log in {self.cockpit.plan.state_dir / 'logs'}"
        )

    @property
    def following(self) -> bool:
        """At the bottom: new lines scroll into view. Scrolled up to read: they don't move the view."""
        log = self.query_one("#log", RichLog)
        return log.scroll_y >= log.max_scroll_y

    def show(self, snapshot: Snapshot) -> None:
        log = self.query_one("#log", RichLog)
        follow = self.following
        for event in snapshot.events:
            if event.id <= self._last_id:
                continue
            self._last_id = event.id
            line = event_line(event)
            self.lines.append(line)
            if self._matches(line):
                log.write(line, expand=True, scroll_end=follow)

    def _matches(self, line: str) -> bool:
        return not self.filter or self.filter.lower() in line.lower()

    def _rewrite(self) -> None:
        log = self.query_one("#log", RichLog)
        log.clear()
        for line in self.lines:
            if self._matches(line):
                log.write(line, expand=True, scroll_end=True)
        self.query_one("#log-where", Static).update(self._where())

    def filter_focus(self) -> Widget:
        return self.query_one("#log", RichLog)

    def filter_changed(self) -> None:
        self._rewrite()

    def action_follow(self) -> None:
        self.query_one("#log", RichLog).scroll_end(animate=False)

"""Helpdesk triage: the helpdesk's one screen for one user, scrollable at 80×24.

Type any of the user's addresses or aliases (the directories are asked which mailbox owns it); the
answer says which server to log in to now, where the migration stands (cumulative counts), what is
missing on the target and why, what the readiness checks found about this user, the last failure in
the server's words, and the live checks (directories, logins, the comparison). The input is cleared
for the next search; ↑/↓ and PgUp/PgDn scroll the answer while the input keeps the focus.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Header, Input, Static

from checks.triage import Triage, triage
from cockpit.format import block
from cockpit.screens.base import View
from cockpit.triage_text import render
from cockpit.widgets.keybar import KeyBar


class TriageView(View):
    crumb = "user"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("down", "scroll(1)", "Scroll", show=False),
        Binding("up", "scroll(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll_page(1)", "Page down", show=False),
        Binding("pageup", "scroll_page(-1)", "Page up", show=False),
    ]

    def __init__(self, address: str = "") -> None:
        super().__init__()
        self.address = address
        self.result: Triage | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            value=self.address,
            placeholder="any address or alias of the user; Enter checks (↑/↓ PgUp/PgDn scroll the answer)",
            id="user",
        )
        with VerticalScroll(id="triage-scroll"):
            yield Static("", id="triage", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#user", Input).focus()
        if self.address:
            self.start(self.address)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.start(event.value.strip())

    def start(self, address: str) -> None:
        self.address = address
        self.query_one("#user", Input).value = ""  # ready for the next search
        self.query_one("#triage", Static).update(
            f"checking {address}: directories, logins, the ledger, both mailboxes…"
        )
        self._run(address)

    @work(thread=True, exclusive=True, group="triage")
    def _run(self, address: str) -> None:
        result = triage(self.cockpit.plan, address)
        self.app.call_from_thread(self._show_result, result)

    def show_background_error(self, reason: str) -> None:
        """The lookup failed unforeseen (the app reports it here and goes on)."""
        self.query_one("#triage", Static).update(f"could not check {self.address}: {reason}")

    def _show_result(self, result: Triage) -> None:
        self.result = result
        self.query_one("#triage", Static).update(block(render(result)))
        self.query_one("#triage-scroll", VerticalScroll).scroll_home(animate=False)

    def action_scroll(self, lines: int) -> None:
        self.query_one("#triage-scroll", VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_scroll_page(self, pages: int) -> None:
        box = self.query_one("#triage-scroll", VerticalScroll)
        box.scroll_relative(y=pages * max(box.size.height - 1, 1), animate=False)

"""Helpdesk triage: type an address; see directory presence, a login test on both sides, the
migration state per folder and whether the target holds all of the source's mail right now."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Input, Static

from checks.triage import Triage, triage
from cockpit.screens.base import View
from cockpit.widgets.keybar import KeyBar

MARKS = {True: "ok  ", False: "FAIL", None: "-   "}


class TriageView(View):
    crumb = "user"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, address: str = "") -> None:
        super().__init__()
        self.address = address
        self.result: Triage | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            value=self.address, placeholder="user address (source or target), Enter to check", id="user"
        )
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
        self.query_one("#triage", Static).update(render(result))


def render(result: Triage) -> str:
    lines = [f"{MARKS[s.ok]} {s.name:<16} {s.detail}" for s in result.steps]
    if result.detail is not None and result.detail.folders:
        lines += ["", "folder                          copied skipped failed pending  note"]
        for f in result.detail.folders:
            note = f.error or (f"excluded: {f.excluded}" if f.excluded else "")
            lines.append(
                f"{f.source[:30]:<30} {f.copied:>8} {f.skipped:>7} {f.failed:>6} {f.pending:>7}  {note}"
            )
    if result.verify is not None and result.verify.differences:
        lines += ["", "not on the target:"]
        lines += [
            f"  {d.bucket:<9} {d.folder} UID {d.uid} ({d.size} bytes): {d.reason}"
            for d in result.verify.differences[:50]
        ]
    return "\n".join(lines)

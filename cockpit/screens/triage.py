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
from cockpit.format import block, state_label
from cockpit.screens.base import View
from cockpit.widgets.keybar import KeyBar

MARKS = {True: "ok  ", False: "FAIL", None: "-   "}
#: Messages listed as missing at most (the count says how many more).
MISSING_SHOWN = 500


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


def render(result: Triage) -> str:
    """The answer, most wanted first: where to log in, the migration, the last failure, findings,
    then the live checks, folders and every message missing on the target with its reason."""
    entry = result.entry
    if entry is None:
        return "\n".join(f"{MARKS[s.ok]} {s.name:<16} {s.detail}" for s in result.steps)
    lines = [f"{result.query}: mailbox {entry.source} → {entry.target}, wave {entry.wave}"]
    if result.found_as:
        lines.append(f"  ({result.found_as})")
    lines += ["", "LOG IN TO NOW", f"  {result.log_in_to}", "", "MIGRATION"]
    row = result.row
    if row is None:
        lines.append("  not started: no run has touched this mailbox yet")
    else:
        done, total = row.done_of_total
        unopened = f", {row.folder_errors} folder(s) could not be opened" if row.folder_errors else ""
        lines.append(
            f"  {state_label(row.state)}: {done:,} of {total:,} messages copied, {row.failed} failed, "
            f"{row.skipped} skipped{unopened}"
        )
    lines += ["", "LAST FAILURE, in the server's words", f"  {result.last_failure or 'none recorded'}"]
    lines += ["", f"READINESS FINDINGS about this user ({len(result.findings)})"]
    lines += [f"  {f.severity:<8} {f.check_id} {f.title}: {f.observed or '-'}" for f in result.findings] or [
        "  none"
    ]
    lines += ["", "CHECKED NOW"] + [f"  {MARKS[s.ok]} {s.name:<16} {s.detail}" for s in result.steps]
    if result.detail is not None and result.detail.folders:
        lines += ["", "FOLDERS                           copied skipped failed pending  note"]
        for f in result.detail.folders:
            note = f.error or (f"excluded: {f.excluded}" if f.excluded else "")
            lines.append(
                f"  {f.source[:30]:<30} {f.copied:>8} {f.skipped:>7} {f.failed:>6} {f.pending:>7}  {note}"
            )
    if result.verify is not None and result.verify.differences:
        differences = result.verify.differences
        lines += ["", f"NOT ON THE TARGET, and why ({len(differences)})"]
        lines += [
            f"  {d.bucket:<9} {d.folder} UID {d.uid} ({d.size} bytes): {d.reason}"
            for d in differences[:MISSING_SHOWN]
        ]
        if len(differences) > MISSING_SHOWN:
            lines.append(f"  … and {len(differences) - MISSING_SHOWN} more (cutover verify lists them all)")
    return "\n".join(lines)

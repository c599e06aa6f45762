"""Confirmation before anything changes, the command bar and the searchable help."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from cockpit.actions import all_actions, display_key, effective_key, keybar_rank


class DialogError(Static):
    """The reason a dialog refused what was typed, inside the dialog, which stays open: a refused
    input never closes a dialog, so the next keys typed still land in it and act nowhere else."""

    DEFAULT_CSS = """
    DialogError {
        color: $text-error;
        text-style: bold;
        height: auto;
        display: none;
    }
    """

    def __init__(self) -> None:
        super().__init__("", markup=False, classes="dialog-error")

    def say(self, text: str) -> None:
        self.update(text)
        self.display = True

    @property
    def text(self) -> str:
        return str(self.content) if self.display else ""


class Confirm(ModalScreen[bool]):
    """Lists exactly what will happen; asks for the wave's name typed when ``typed`` is set.

    The modal screen takes every key while it is open (no view's or the app's binding acts); it closes
    only on Esc, on ``y`` (no name to type) or on Enter with the right name. A wrong name keeps it open.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("y", "yes", "Confirm", show=False)]

    def __init__(self, title: str, operations: list[str], typed: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.operations = operations
        self.typed = typed

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self.title_text, id="confirm-title", markup=False)
            yield Static("\n".join(f"• {op}" for op in self.operations), id="confirm-ops", markup=False)
            if self.typed:
                yield Static(
                    f"Type the wave name ({self.typed}) and press Enter to confirm; Esc cancels.",
                    markup=False,
                )
                yield Input(id="confirm-input")
            else:
                yield Static("y confirms, Esc cancels.")
            yield DialogError()

    def on_mount(self) -> None:
        if self.typed:
            self.query_one("#confirm-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip() == self.typed:
            self.dismiss(True)
        else:
            shown = event.value.strip() or "nothing"
            self.query_one(DialogError).say(
                f"{shown!r} is not the wave's name ({self.typed}): nothing was done; type it, or Esc cancels"
            )
            event.input.clear()

    def action_yes(self) -> None:
        if not self.typed:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class Interlock(ModalScreen[str]):
    """The cutover window's interlock: lists the step and its conditions, then asks for the wave's
    name typed back and a reason; returns the reason ("" when cancelled). A wrong name or an empty
    reason is refused inside the dialog, which stays open; Esc cancels."""

    BINDINGS = [Binding("escape", "dismiss('')", "Cancel")]

    def __init__(self, title: str, lines: list[str], wave: str) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines
        self.wave = wave

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self.title_text, id="confirm-title", markup=False)
            yield Static("\n".join(f"• {line}" for line in self.lines), id="confirm-ops", markup=False)
            yield Static(
                f"Type the wave name ({self.wave}), then a reason; Enter confirms, Esc cancels.", markup=False
            )
            yield Input(placeholder="the wave's name", id="interlock-wave")
            yield Input(placeholder="reason (required: kept in the audit trail)", id="interlock-reason")
            yield DialogError()

    def on_mount(self) -> None:
        self.query_one("#interlock-wave", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        name = self.query_one("#interlock-wave", Input)
        reason = self.query_one("#interlock-reason", Input).value.strip()
        if name.value.strip() != self.wave:
            shown = name.value.strip() or "nothing"
            self.query_one(DialogError).say(
                f"{shown!r} is not the wave's name ({self.wave}): nothing was done; type it, or Esc cancels"
            )
            name.clear()
            name.focus()
        elif not reason:
            self.query_one(DialogError).say("a reason is required: type it and press Enter, or Esc cancels")
            self.query_one("#interlock-reason", Input).focus()
        else:
            self.dismiss(reason)


class ReasonPrompt(ModalScreen[str]):
    """Asks for the reason of a decision (kept in the ledger); Esc cancels. An empty reason is refused
    inside the dialog, which stays open (what is typed next is the reason, never a command)."""

    BINDINGS = [Binding("escape", "dismiss('')", "Cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self.question, markup=False)
            yield Input(placeholder="reason (required), Enter records it, Esc cancels", id="reason")
            yield DialogError()

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        reason = event.value.strip()
        if reason:
            self.dismiss(reason)
        else:
            self.query_one(DialogError).say("a reason is required: type it and press Enter, or Esc cancels")


#: The command bar's views (first word), as ``CockpitApp._run_command`` reads them.
COMMAND_VIEWS = frozenset(
    ("o", "overview", "m", "mb", "mailboxes", "l", "log", "r", "readiness", "checks", "u", "user", "triage",
     "a", "audit", "h", "help", "?", "q", "quit")
)  # fmt: skip


class CommandBar(ModalScreen[str]):
    """``:mailboxes /alice`` jumps to a view with a filter (k9s). An unknown view is refused in the bar,
    which stays open with the text to correct."""

    BINDINGS = [Binding("escape", "dismiss('')", "Cancel")]

    def compose(self) -> ComposeResult:
        yield DialogError()
        yield Input(
            placeholder=":overview  :readiness  :mailboxes [wave] [/filter]  :user ADDRESS  :log  :audit [wave]  :help  :quit",
            id="command",
        )

    def on_mount(self) -> None:
        self.query_one("#command", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        command = event.value.strip().lstrip(":")
        view = command.split()[0].lower() if command.split() else ""
        if view and view not in COMMAND_VIEWS:
            self.query_one(DialogError).say(
                f"unknown view {view!r}: overview, readiness, mailboxes, user, log, audit, help, quit (Esc cancels)"
            )
            return
        self.dismiss(command)


class HelpScreen(ModalScreen[None]):
    """Every action and its key, from the same registry as the bindings; type to search.

    The keys shown are the ones in effect: ``keys`` is the user's keys.toml (action id → keys).
    """

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(
        self,
        read_only: bool,
        keys: Mapping[str, str] | None = None,
        first: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        super().__init__()
        self.read_only = read_only
        self.keys: Mapping[str, str] = keys or {}
        #: The current view's own keys (key, description, action), listed first.
        self.first = tuple(first)

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("Keys (Enter drills down, Esc goes back; type to search)")
            yield Input(placeholder="search", id="help-search")
            yield DataTable(id="help-table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#help-table", DataTable)
        table.add_column("key", width=10)
        table.add_column("action", width=30)
        table.add_column("note", width=30)
        self._fill("")
        self.query_one("#help-search", Input).focus()

    def _fill(self, needle: str) -> None:
        table = self.query_one("#help-table", DataTable)
        table.clear()
        for key, description, _action in self.first:
            if not needle or needle.lower() in f"{description} {key}".lower():
                table.add_row(key, description, "this view")
        own = {action for _, _, action in self.first}
        for spec in sorted(all_actions(), key=lambda s: keybar_rank(s.action, False)):
            if spec.action in own:
                continue
            key = display_key(effective_key(spec, self.keys))
            if needle and needle.lower() not in f"{spec.description} {spec.id} {key}".lower():
                continue
            note = spec.note or ("changes things: confirmed" if spec.dangerous else "")
            if spec.dangerous and self.read_only:
                note = "disabled (read-only)"
            table.add_row(key, spec.description, note)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

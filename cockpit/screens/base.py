"""What every cockpit view shares: a breadcrumb title and refreshing from snapshots while visible."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Input, Static

from cockpit.format import block
from cockpit.shell import Cockpit, cockpit_of
from cockpit.widgets.flash import Flash
from cockpit.widgets.keybar import KeyBar
from runners.state.read_models.snapshot import Snapshot


class View(Screen[None]):
    #: Shown in the header as "cutover › <crumb>".
    crumb = ""
    #: Its rows are few (one mailbox's): read them alone while it is drawn, not once it is.
    read_at_once = False

    def __init__(self) -> None:
        super().__init__()
        #: What each of its lines of text shows now (``set_text``), by selector.
        self._texts: dict[str, str | Text] = {}
        #: The app's stylesheet generation and focus its styles were last worked out under.
        self._styled_under: tuple[int, bool] | None = None

    def clear_flash(self) -> None:
        """A view kept and opened again starts without the message its last opening said."""
        line = self.query_one_optional(Flash)
        if line is not None:
            line.clear()

    def set_text(self, selector: str, text: str | Text) -> None:
        """A line of text's new content (never markup), when it changed (``set_line_text``)."""
        before = self._texts.get(selector, "")
        if before != text:
            self._texts[selector] = text
            set_line_text(self.query_one(selector, Static), before, text)

    @property
    def cockpit(self) -> Cockpit:
        return cockpit_of(self.app)

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        # Textual works out the whole screen's styles again when a screen is pushed again, for a
        # theme switched while it was away (~7 ms for the mailbox view at 160x48: most of Enter or
        # `m` onto a kept view). Runs before Screen's own handler: skipped when nothing it depends
        # on changed.
        if (self.app._css_update_count, self.app.app_focus) == self._styled_under:
            event.refresh_styles = False
        snapshot = self.cockpit.snapshot
        if snapshot is None:
            self.cockpit.poke()
        elif snapshot.query != self.cockpit.current_query():
            # This view wants other rows than the last snapshot's: read them once it is drawn from
            # that one (the reader threads would compete with the drawing). Else the next poll will do.
            if self.read_at_once:
                self.cockpit.poke_rows()
            else:
                self.call_after_refresh(self.cockpit.poke)
        self.app.sub_title = " › ".join(
            s.crumb for s in self.app.screen_stack if isinstance(s, View) and s.crumb
        )
        if self.cockpit.snapshot is not None:
            self.show(self.cockpit.snapshot)

    def on_screen_suspend(self) -> None:
        # On top, its styles followed every stylesheet and focus change: they are current as of now.
        self._styled_under = (self.app._css_update_count, self.app.app_focus)

    def show(self, snapshot: Snapshot) -> None:
        """Apply a snapshot; called only while this view is on top."""


class TextView(View):
    """One record as plain text (the server's words verbatim, never markup); ``y`` copies it."""

    #: The id of the text widget (the stylesheet sizes it).
    text_id = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(block(self.text()), id=self.text_id, markup=False)
        yield KeyBar()

    def text(self) -> str:
        raise NotImplementedError

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text())  # OSC 52: works over SSH and tmux
        self.notify("copied to the clipboard")


def set_line_text(static: Static, before: str | Text, text: str | Text) -> None:
    """``static``'s text (never markup) goes from ``before`` to ``text``: laid out again only when its
    height may change (a text that wraps, or another number of lines). A layout pass draws the whole
    screen again, scrollbars included: at 100,000 mailboxes it was most of what a cursor move or a
    snapshot cost the UI thread (cockpit_bench.py)."""
    width = static.content_size.width
    old = before.plain if isinstance(before, Text) else before
    new = text.plain if isinstance(text, Text) else text
    old_lines, new_lines = old.split("\n"), new.split("\n")
    same_height = (
        width > 0
        and old != ""
        and new != ""
        and len(old_lines) == len(new_lines)
        and all(cell_len(line) <= width for line in (*old_lines, *new_lines))
    )
    static.update(text if isinstance(text, Text) else Text(text), layout=not same_height)


class FilteredView(View):
    """A view with k9s's filter: "/" opens the box (an ``Input`` with id ``filter``), Enter applies it,
    Esc closes the box, then clears the filter, then goes back. The view says which widget takes the
    focus back (``filter_focus``) and redraws for the new filter (``filter_changed``)."""

    filter: str = ""

    def filter_focus(self) -> Widget:
        raise NotImplementedError

    def filter_changed(self) -> None:
        raise NotImplementedError

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = self.filter
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.filter = event.value.strip()
        event.input.display = False
        self.filter_focus().focus()
        self.filter_changed()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display:
            box.display = False
            self.filter_focus().focus()
        elif self.filter:
            self.filter = ""
            self.filter_changed()
        else:
            self.app.pop_screen()

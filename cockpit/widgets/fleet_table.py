"""A table of plain-text rows drawn with Textual's line API: only the visible lines are rendered,
each from one pre-padded string, so a snapshot that changes every row redraws only the lines on
screen (bench/cockpit_bench.py: applying a snapshot of 500 listed rows, p50 7.5 ms).

Textual's DataTable renders every cell through Rich (padding, wrapping, measuring) and throws its
render cache away on every ``update_cell``; with a few hundred rows changing twice a second that
was most of the cockpit's UI-thread time. This table has fixed column widths, a header that stays
put, a row cursor and rows keyed by a string (the mailbox), which is all the mailboxes view needs.

Readable at 80 columns: the last column (the server's words) takes whatever width the others leave;
the first ``frozen`` columns (the mailbox) stay put while ←/→ scroll the rest; ``ctrl+w`` (k9s's wide
view) widens the last column to its longest text. A row's ``tone`` ("error", "warning") colours it,
and makes it bold too, so it still stands out without colour (NO_COLOR).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from runners.safe_text import visible


def fit(text: str, width: int) -> str:
    """``text`` padded or cut to exactly ``width`` terminal cells (an ellipsis marks a cut)."""
    text = visible(text)  # control characters would move the terminal's cursor: shown, never obeyed
    if text.isascii():  # the common case: one cell per character
        return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, width - 1) + "…"


class FleetTable(ScrollView, can_focus=True):
    """Rows of fixed-width text cells under a fixed header, with a row cursor; Enter selects."""

    BINDINGS = [
        Binding("enter", "select", "Open", show=False),
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First", show=False),
        Binding("end", "cursor_to(-1)", "Last", show=False),
        # At 80 columns the right-hand columns (the error) are off screen: a column at a time.
        Binding("left", "column(-1)", "Left", show=False),
        Binding("right", "column(1)", "Right", show=False),
        Binding("ctrl+w", "wide", "Wide"),
    ]
    COMPONENT_CLASSES = {
        "fleet-table--header",
        "fleet-table--cursor",
        "fleet-table--even-row",
        "fleet-table--error",
        "fleet-table--warning",
    }
    DEFAULT_CSS = """
    FleetTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .fleet-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .fleet-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .fleet-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .fleet-table--even-row {
            background: $surface-lighten-1 50%;
        }
        &:dark > .fleet-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .fleet-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .fleet-table--error {
            color: $text-error;
            text-style: bold;
        }
        & > .fleet-table--warning {
            color: $text-warning;
        }
    }
    """
    #: The longest last cell the wide view makes room for (a runaway server message stays bounded).
    WIDE_MAX = 1000

    @dataclass
    class RowSelected(Message):
        """Enter (or a click on the cursor's row) on a row."""

        table: FleetTable
        key: str

        @property
        def control(self) -> FleetTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[tuple[str, int]],
        *,
        id: str | None = None,  # noqa: A002  (Textual's name)
        frozen: int = 0,
        on_cursor: Callable[[str | None], object] | None = None,
        on_jump: Callable[[int], object] | None = None,
        widens: bool = True,
    ) -> None:
        super().__init__(id=id)
        #: Whether ctrl+w is offered: a table whose last column is short (a count) has nothing to widen.
        self.widens = widens
        #: Called with the cursor's key whenever it lands on another row (a detail line follows it).
        self.on_cursor = on_cursor
        #: Called with 0 (Home) or -1 (End): a table holding a window of a longer list reads another.
        self.on_jump = on_jump
        #: (label, width): the last column's width is its least; it takes the spare width.
        self.columns = tuple(columns)
        #: Columns on the left that stay put when the rest scrolls sideways.
        self.frozen = frozen
        #: ctrl+w: the last column as wide as its longest text (scroll sideways to read it).
        self.wide = False
        self.cursor_row = 0
        self._keys: list[str] = []
        self._cells: list[Sequence[str]] = []
        self._tones: list[str] = []
        #: Each row's text as drawn (frozen part, scrolling part), made when the row is first drawn: a
        #: snapshot of 500 rows of which 45 are on screen pads and cuts 45 (cockpit_bench.py).
        self._drawn: list[tuple[str, str] | None] = []
        self._widths = [width for _, width in self.columns]
        self._head_header, self._header = self._split(tuple(label for label, _ in self.columns))
        self._notified: str | None = None
        self._resize_virtual()

    # -- data ------------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def cursor_key(self) -> str | None:
        return self._keys[self.cursor_row] if self._keys else None

    def row_text(self, key: str) -> str:
        """The row as drawn (for tests and copying)."""
        head, line = self._row(self._keys.index(key))
        return head + line

    def _row(self, index: int) -> tuple[str, str]:
        drawn = self._drawn[index]
        if drawn is None:
            drawn = self._drawn[index] = self._split(self._cells[index])
        return drawn

    def cells(self, key: str) -> Sequence[str]:
        """The row's cells as given, uncut (a detail line shows the last one whole)."""
        return self._cells[self._keys.index(key)]

    def _split(self, cells: Sequence[str]) -> tuple[str, str]:
        """The frozen part and the scrolling part of a row, each padded to its columns' widths."""
        padded = [f" {fit(cell, width)} " for cell, width in zip(cells, self._widths, strict=True)]
        return "".join(padded[: self.frozen]), "".join(padded[self.frozen :])

    def _layout_widths(self) -> list[int]:
        """Every column's declared width, the last widened to the spare width (and its longest text when wide)."""
        widths = [width for _, width in self.columns]
        available = 0
        if self.is_mounted:
            # The vertical scrollbar's room, known before it appears (rows beyond the height add it).
            bar = self.styles.scrollbar_size_vertical if len(self._cells) + 1 > self.size.height else 0
            available = self.size.width - self.styles.gutter.width - bar
        fixed = sum(w + 2 for w in widths[:-1]) + 2
        widths[-1] = max(widths[-1], available - fixed)
        if self.wide and self._cells:
            longest = max(cell_len(cells[-1]) for cells in self._cells)
            widths[-1] = max(widths[-1], min(longest, self.WIDE_MAX))
        return widths

    def _relayout(self) -> None:
        widths = self._layout_widths()
        if widths == self._widths:
            return
        self._widths = widths
        self._head_header, self._header = self._split(tuple(label for label, _ in self.columns))
        self._drawn = [None] * len(self._cells)
        self._resize_virtual()
        self.refresh()

    def _resize_virtual(self) -> None:
        self.virtual_size = Size(cell_len(self._head_header) + cell_len(self._header), len(self._keys) + 1)

    def set_rows(
        self, rows: Sequence[tuple[str, Sequence[str]]], tones: Mapping[str, str] | None = None
    ) -> None:
        """Show exactly these (key, cells) rows in this order; the cursor stays on its row's key if
        that row is still there, else on the same position. Only changed visible lines repaint.
        ``tones`` colours rows by key: "error" or "warning"."""
        tones = tones or {}
        keys = [key for key, _ in rows]
        current = self.cursor_key
        before = self._cells
        self._cells = [cells for _, cells in rows]
        widths = self._layout_widths()  # a scrollbar may come or go, a longer text arrive (wide)
        relaid = widths != self._widths
        if relaid:
            self._widths = widths
            self._head_header, self._header = self._split(tuple(label for label, _ in self.columns))
        row_tones = [tones.get(key, "") for key in keys]
        if keys == self._keys and not relaid:
            for index, (old, new, old_tone, new_tone) in enumerate(
                zip(before, self._cells, self._tones, row_tones, strict=True)
            ):
                if old != new or old_tone != new_tone:
                    self._drawn[index] = None
                    self._refresh_row(index)
            self._tones = row_tones
            self._resize_virtual()
            return
        self._keys, self._tones = keys, row_tones
        self._drawn = [None] * len(keys)
        if current is not None and current in keys:
            self.cursor_row = keys.index(current)
        self.cursor_row = max(0, min(self.cursor_row, len(keys) - 1))
        self._resize_virtual()
        self._scroll_cursor_into_view()
        self._cursor_moved()
        self.refresh()

    def _cursor_moved(self) -> None:
        if self.cursor_key != self._notified:
            self._notified = self.cursor_key
            if self.on_cursor is not None:
                self.on_cursor(self.cursor_key)

    def on_resize(self) -> None:
        self._relayout()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.widens or action != "wide"

    def action_wide(self) -> None:
        """ctrl+w: the last column as wide as its longest text, or back to the screen's width."""
        self.wide = not self.wide
        self._relayout()
        self.notify("wide view: ←/→ scroll the whole text" if self.wide else "wide view off")

    def clear(self) -> None:
        self.set_rows([])

    # -- cursor ----------------------------------------------------------------------------------

    @property
    def page_rows(self) -> int:
        """Data rows visible at once (the header takes a line)."""
        return max(1, self.scrollable_content_region.height - 1)

    def move_cursor(self, row: int) -> None:
        if not self._keys:
            return
        row = max(0, min(row, len(self._keys) - 1))
        if row == self.cursor_row:
            return
        before, self.cursor_row = self.cursor_row, row
        self._refresh_row(before)
        self._refresh_row(row)
        self._scroll_cursor_into_view()
        self._cursor_moved()

    def _scroll_cursor_into_view(self) -> None:
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + self.page_rows:
            self.scroll_to(y=self.cursor_row - self.page_rows + 1, animate=False, immediate=True)

    def _refresh_row(self, index: int) -> None:
        y = index - round(self.scroll_y) + 1
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, pages: int) -> None:
        self.move_cursor(self.cursor_row + pages * self.page_rows)

    def action_cursor_to(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else len(self._keys) - 1)
        if self.on_jump is not None:
            self.on_jump(row)

    def action_column(self, delta: int) -> None:
        """Scroll sideways to the start of the previous or next column (scroll_to keeps it in range)."""
        starts, x = [0], 0
        for width in self._widths[self.frozen : -1]:
            x += width + 2
            starts.append(x)
        current = round(self.scroll_x)
        width = self.scrollable_content_region.width - cell_len(self._head_header)
        if delta > 0:  # past the last column's start, a screen at a time through it (a long error)
            target = next((start for start in starts if start > current), current + width)
        else:
            target = next((start for start in reversed(starts) if start < current), 0)
        self.scroll_to(x=target, animate=False, immediate=True)

    def action_select(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.RowSelected(self, self.cursor_key))

    def on_click(self, event: events.Click) -> None:
        index = round(self.scroll_y) + event.y - 1
        if event.y < 1 or index >= len(self._keys):
            return
        if index == self.cursor_row:
            self.action_select()
        else:
            self.move_cursor(index)

    def on_focus(self) -> None:
        self.refresh()  # the cursor's style depends on focus

    def on_blur(self) -> None:
        self.refresh()

    # -- drawing ---------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("fleet-table--header")
            return self._strip(self._head_header, self._header, style, scroll_x, width)
        index = scroll_y + y - 1
        if index >= len(self._keys):
            return Strip.blank(width, base)
        style = base
        if index % 2:
            style += self.get_component_rich_style("fleet-table--even-row")
        if self._tones[index]:
            style += self.get_component_rich_style(f"fleet-table--{self._tones[index]}")
        if index == self.cursor_row:
            style += self.get_component_rich_style("fleet-table--cursor")
        head, line = self._row(index)
        return self._strip(head, line, style, scroll_x, width)

    @staticmethod
    def _strip(head: str, text: str, style: Style, scroll_x: int, width: int) -> Strip:
        """The frozen ``head`` at the left edge, then ``text`` scrolled by ``scroll_x``."""
        head_width = min(cell_len(head), width)
        rest = Strip([Segment(text, style)], cell_len(text)).crop_extend(
            scroll_x, scroll_x + width - head_width, style
        )
        if not head:
            return rest
        return Strip.join(
            [Strip([Segment(head, style)], cell_len(head)).crop_extend(0, head_width, style), rest]
        )

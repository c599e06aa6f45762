"""The cockpit's own widgets: the line-API mailbox table and the key bar, in a real (headless) app."""

from __future__ import annotations

import asyncio

from rich.cells import cell_len
from textual.app import App, ComposeResult
from textual.binding import Binding

from cockpit.format import eta_against_window, window_left
from cockpit.widgets.fleet_table import FleetTable, fit
from cockpit.widgets.keybar import KeyBar

COLUMNS = (("mailbox", 12), ("state", 7))


def rows(names: list[str], state: str = "running") -> list[tuple[str, tuple[str, ...]]]:
    return [(name, (name, state)) for name in names]


class TableApp(App[None]):
    BINDINGS = [Binding("x", "bell", "Ring"), Binding("z", "hidden", "Hidden", show=False)]  # noqa: RUF012

    def __init__(self, columns: tuple[tuple[str, int], ...] = COLUMNS) -> None:
        super().__init__()
        self.columns = columns
        self.selected: list[str] = []

    def compose(self) -> ComposeResult:
        yield FleetTable(self.columns, id="t")
        yield KeyBar()

    def on_fleet_table_row_selected(self, event: FleetTable.RowSelected) -> None:
        self.selected.append(event.key)


def test_fit_pads_cuts_and_neutralises_control_characters() -> None:
    assert fit("ab", 4) == "ab  "
    assert fit("abcdef", 4) == "abc…"
    assert fit("a\tb\r\nc\x1b", 7) == "a\u2409b\u240d\u240ac\u241b"  # shown, never obeyed by the terminal
    wide = fit("日本語のメール", 6)  # two cells per character
    assert cell_len(wide) == 6 and wide.endswith("…")
    assert cell_len(fit("é", 3)) == 3


def test_cursor_follows_its_row_across_reorders_and_scrolls_into_view() -> None:
    async def scenario() -> None:
        app = TableApp()
        async with app.run_test(size=(40, 10)) as pilot:
            table = app.query_one(FleetTable)
            names = [f"user{i:02d}" for i in range(30)]
            table.set_rows(rows(names))
            await pilot.pause()
            await pilot.press("down", "down")
            assert table.cursor_key == "user02"
            # The same mailbox moves (a new sort or new rows above it): the cursor stays on it.
            table.set_rows(rows(["new-a", "new-b", *names]))
            assert table.cursor_key == "user02" and table.cursor_row == 4
            # Its row disappears: the cursor keeps the position instead of jumping to the top.
            table.set_rows(rows([n for n in ["new-a", "new-b", *names] if n != "user02"]))
            assert table.cursor_row == 4 and table.cursor_key == "user03"
            await pilot.press("end")
            await pilot.pause()
            assert table.cursor_key == "user29"
            # The cursor's row is on screen: the header takes a line, the horizontal bar none here.
            first_visible = round(table.scroll_y)
            assert first_visible <= table.cursor_row < first_visible + table.size.height - 1
            await pilot.press("home", "pagedown")
            assert table.cursor_row == table.size.height - 1  # one page: every data line on screen
            await pilot.press("enter")
            await pilot.pause()
            assert app.selected == [table.cursor_key]

    asyncio.run(scenario())


def test_left_and_right_scroll_a_column_at_a_time_on_a_narrow_terminal() -> None:
    async def scenario() -> None:
        app = TableApp((("mailbox", 12), ("state", 7), ("error", 30)))
        async with app.run_test(size=(12, 10)) as pilot:  # far narrower than the 55-cell rows
            table = app.query_one(FleetTable)
            table.set_rows([("alice", ("alice", "failed", "NO [AUTHENTICATIONFAILED]"))])
            await pilot.pause()
            assert "failed" not in table.render_line(1).text
            await pilot.press("right")
            await pilot.pause()
            assert table.scroll_x == 14  # the second column: " " + 12 cells + " " before it
            assert table.render_line(0).text.split()[0] == "state"
            assert table.render_line(1).text.split()[0] == "failed"
            await pilot.press("right")  # the third column
            await pilot.pause()
            assert table.scroll_x == 23
            await pilot.press("right", "right", "right")  # then a screen at a time, to the end
            await pilot.pause()
            assert table.scroll_x == table.max_scroll_x == 55 - 12
            assert "ILED]" in table.render_line(1).text  # the end of the error
            await pilot.press("left", "left")
            await pilot.pause()
            assert table.scroll_x == 14
            await pilot.press("left")
            await pilot.pause()
            assert table.scroll_x == 0 and table.render_line(1).text.split()[0] == "alice"

    asyncio.run(scenario())


def test_changed_rows_are_redrawn_and_empty_table_has_no_cursor() -> None:
    async def scenario() -> None:
        app = TableApp()
        async with app.run_test(size=(40, 10)) as pilot:
            table = app.query_one(FleetTable)
            table.set_rows(rows(["alice", "bob"]))
            await pilot.pause()
            table.set_rows([("alice", ("alice", "ok")), ("bob", ("bob", "running"))])
            await pilot.pause()
            assert "ok" in table.row_text("alice")
            lines = [strip.text for strip in (table.render_line(y) for y in range(3))]
            assert lines[0].split() == ["mailbox", "state"]
            assert lines[1].split() == ["alice", "ok"] and lines[2].split() == ["bob", "running"]
            table.clear()
            assert table.cursor_key is None and table.row_count == 0
            await pilot.press("enter")
            assert app.selected == []

    asyncio.run(scenario())


def test_key_bar_lists_shown_bindings_once_and_clicking_a_hint_runs_it() -> None:
    async def scenario() -> None:
        app = TableApp()
        async with app.run_test(size=(80, 10)) as pilot:
            bar = app.query_one(KeyBar)
            await pilot.pause()
            text = bar.render().plain
            assert "x Ring" in text and "Hidden" not in text
            rung: list[str] = []
            app.action_bell = lambda: rung.append("bell")  # type: ignore[method-assign]
            start = text.index("x Ring")
            await pilot.click(KeyBar, offset=(start + 1, 0))
            await pilot.pause()
            assert rung == ["bell"]

    asyncio.run(scenario())


def test_eta_is_said_against_the_cutover_window() -> None:
    start = 1_000_000.0
    two_hours_in = start + 2 * 3600
    assert window_left(None, start, two_hours_in) is None  # no window in the plan
    assert window_left(8, None, two_hours_in) is None  # nothing running
    assert eta_against_window(None, None, 8) == ("window 8 h", False)  # planned, nothing running
    assert eta_against_window(None, None, None) == ("", False)
    left = window_left(8, start, two_hours_in)
    assert left == 6 * 3600
    assert eta_against_window(3600, left) == ("window: 6:00:00 left, fits with 5:00:00 to spare", False)
    assert eta_against_window(7 * 3600, left) == ("window: 6:00:00 left, ETA over by 1:00:00", True)
    assert eta_against_window(None, left) == ("window: 6:00:00 left", False)  # no throughput yet
    assert eta_against_window(60, window_left(1, start, two_hours_in)) == ("window over by 1:00:00", True)


class FrozenApp(TableApp):
    def compose(self) -> ComposeResult:
        yield FleetTable(self.columns, id="t", frozen=1)
        yield KeyBar()


LONG = "NO [AUTHENTICATIONFAILED] Authentication failed: the master user may not log in as this mailbox"


def test_the_name_stays_put_the_error_takes_the_spare_width_and_ctrl_w_widens_it() -> None:
    async def scenario() -> None:
        app = FrozenApp((("mailbox", 10), ("state", 8), ("wave", 8), ("error", 10)))
        async with app.run_test(size=(60, 10)) as pilot:
            table = app.query_one(FleetTable)
            table.set_rows([("alice", ("alice", "failed", "pilot", LONG))], {"alice": "error"})
            await pilot.pause()
            # 12 + 10 + 10 cells for the first three columns: the error gets the other 26, not its least 10.
            line = table.render_line(1).text
            assert len(line) == 60 and line.rstrip().endswith("…") and "may not" not in line
            assert "NO [AUTHENTICATIONFAILED]" in line
            await pilot.resize_terminal(40, 10)  # now the error gets only its least: the rest scrolls
            await pilot.pause()
            await pilot.press("right")  # the rest scrolls, the mailbox stays
            await pilot.pause()
            line = table.render_line(1).text
            assert line.startswith(" alice ") and "failed" not in line and "pilot" in line
            assert table.render_line(0).text.startswith(" mailbox ")
            await pilot.press("left", "ctrl+w")  # wide: the whole error, reached by scrolling
            await pilot.pause()
            assert table.wide and table.max_scroll_x > 0
            await pilot.press("end")
            table.scroll_to(x=table.max_scroll_x, animate=False, immediate=True)
            await pilot.pause()
            line = table.render_line(1).text
            assert line.startswith(" alice ") and "log in as this mailbox" in line
            await pilot.press("ctrl+w")
            await pilot.pause()
            assert not table.wide and table.max_scroll_x == 44 - 40  # the error back to its least width
            assert table.cells("alice")[-1] == LONG  # uncut, for a detail line

    asyncio.run(scenario())


def test_a_toned_row_is_bold_so_it_stands_out_without_colour() -> None:
    async def scenario() -> None:
        app = TableApp()
        async with app.run_test(size=(40, 10)) as pilot:
            table = app.query_one(FleetTable)
            table.set_rows(rows(["alice", "bob", "carol"]), {"bob": "error"})
            table.move_cursor(2)  # the cursor's own style is bold too
            await pilot.pause()
            bob = table.render_line(2)
            alice = table.render_line(1)
            assert all(
                segment.style is not None and segment.style.bold for segment in bob if segment.text.strip()
            )
            assert not any(
                segment.style is not None and segment.style.bold for segment in alice if segment.text.strip()
            )

    asyncio.run(scenario())


class LineApp(App[None]):
    CSS = "#line { height: auto; width: 22; padding: 0 1; }"

    def compose(self) -> ComposeResult:
        from textual.widgets import Static

        yield Static("", id="line")


def test_a_line_of_text_is_laid_out_again_only_when_its_height_may_change() -> None:
    """set_line_text skips the layout pass when the new text takes the lines the old one took; the
    line's height still follows every text: more lines, a text that wraps, fewer lines."""
    from textual.widgets import Static

    from cockpit.screens.base import set_line_text

    async def scenario() -> None:
        app = LineApp()
        async with app.run_test(size=(40, 10)) as pilot:
            line = app.query_one("#line", Static)
            shown = ""

            async def show(text: str) -> int:
                nonlocal shown
                set_line_text(line, shown, text)
                shown = text
                await pilot.pause()
                return line.size.height

            assert await show("12 of 50") == 1
            laid_out: list[bool] = []
            original = line.refresh

            def spy(*args: object, layout: bool = False, **kwargs: object) -> object:
                laid_out.append(layout)
                return original(*args, layout=layout, **kwargs)  # type: ignore[arg-type]

            line.refresh = spy  # type: ignore[method-assign,assignment]
            assert await show("13 of 50") == 1 and laid_out == [False]  # same one line: no layout pass
            assert await show("13 of 50\nerror: x") == 2 and laid_out[-1] is True
            assert await show("14 of 50\nerror: y") == 2 and laid_out[-1] is False
            assert await show("a text far longer than the line is wide") >= 2 and laid_out[-1] is True
            assert await show("short") == 1 and laid_out[-1] is True  # it wrapped before: layout

    asyncio.run(scenario())

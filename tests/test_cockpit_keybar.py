"""Keys you can find (issue #15): the key bar shows the view's own keys first, then the wave's actions,
and says "? more keys" when some don't fit, never cutting silently; "?" lists the view's keys first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_cockpit_progress import feed, plan_with
from textual.widgets import DataTable, Input

from cockpit.app import CockpitApp
from cockpit.screens.dialogs import HelpScreen
from cockpit.widgets.keybar import KeyBar


def test_the_views_keys_come_first_and_what_does_not_fit_is_one_question_mark_away(tmp_path: Path) -> None:
    plan = plan_with(tmp_path, (("alice", "alice", "pilot"),))

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.press("m")
            await pilot.pause()
            bar = app.screen.query_one(KeyBar).render().plain
            assert bar.startswith(" ^w Wide  / Filter  s Sort  L Launch ")
            assert " ? more keys " in bar and bar.rstrip().endswith("^p palette")
            await pilot.resize_terminal(200, 24)
            await pilot.pause()
            bar = app.screen.query_one(KeyBar).render().plain
            for hint in (
                "/ Filter",
                "s Sort",
                "L Launch",
                "P Pause",
                "R Resume",
                "C Cancel",
                "F Retry",
                "q Quit",
            ):
                assert f" {hint} " in bar
            assert " ? Help " in bar and "more keys" not in bar
            # The filter box says what Esc does there: it closes the box and keeps the filter.
            placeholder = app.screen.query_one("#filter", Input).placeholder
            assert "Esc closes" in placeholder and "Esc clears" not in placeholder
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            table = app.screen.query_one("#help-table", DataTable)
            first = [str(table.get_row_at(i)[1]) for i in range(4)]
            assert first == ["Wide", "Filter", "Sort", "Open"]  # this view's, then the registry's
            assert str(table.get_row_at(5)[1]) == "Launch wave"  # after Esc (Back): the wave's actions

    asyncio.run(scenario())

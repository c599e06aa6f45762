"""Waves in the cockpit: listed in the plan's order, a plain yes only for a wave the plan marks as a
pilot, and a launch that never holds up the view (driven by Textual's Pilot)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cockpit_lab import feed
from dovecot_lab import Unreachable, waves_toml, write_plan
from textual.pilot import Pilot

import cockpit.app
from cockpit.app import CockpitApp
from cockpit.screens.dialogs import Confirm, HelpScreen
from cockpit.widgets.fleet_table import FleetTable
from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.state.store import StateStore

FLEET = (("a", "a", "wave2"), ("b", "b", "copilot-finance"), ("c", "c", "early-birds"), ("d", "d", "wave1"))


def plan(root: Path, waves: str = "") -> Path:
    """Servers never contacted: nothing here runs a migration."""
    return write_plan(root, Unreachable(10143), Unreachable(20143), mailboxes=FLEET, tail=waves)


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 30) -> None:
    """Let the app run until ``condition`` holds; fail if it doesn't within ``seconds`` (a bound, not a pace)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.01)


def said(app: CockpitApp) -> list[str]:
    """The notifications the app has shown (Textual keeps them there; textual is pinned exactly)."""
    return [n.message for n in app._notifications]


def overview_waves(root: Path, waves: str) -> list[str]:
    async def scenario() -> list[str]:
        app = CockpitApp(load_plan(plan(root, waves)), poll=False)
        async with app.run_test(size=(120, 40)) as pilot:
            feed(app)
            await pilot.pause()
            return list(app.screen.query_one("#waves", FleetTable).keys)

    return asyncio.run(scenario())


def test_the_overview_lists_waves_in_the_plans_order(tmp_path: Path) -> None:
    declared = waves_toml(("early-birds", "wave1", "wave2", "copilot-finance"))
    assert overview_waves(tmp_path / "declared", declared) == [
        "early-birds",
        "wave1",
        "wave2",
        "copilot-finance",
    ]
    # Without [[waves]], the order in which the mailbox list first names them.
    assert overview_waves(tmp_path / "csv", "") == ["wave2", "copilot-finance", "early-birds", "wave1"]


@pytest.mark.parametrize(
    ("waves", "error"),
    [
        (
            waves_toml(("wave1", "wave2", "copilot-finance")),
            "mailboxes.csv:4) is not declared: with [[waves]], every wave",
        ),
        (
            waves_toml(("wave1", "wave2", "copilot-finance", "early-birds", "wave3")),
            '[waves[4].name] no mailbox of the mailbox list is in wave "wave3" (did you mean "wave',
        ),
        (waves_toml(("wave1", "wave1")), '[waves[1].name] wave "wave1" is declared twice'),
        (
            '[[waves]]\nname = "wave1"\npilot = "yes"\n',
            "[waves[0].pilot] expected true or false, got a string",
        ),
        (
            '[[waves]]\nname = "wave1"\npliot = true\n',
            'unknown key "pliot" in waves[0] (did you mean "pilot"?)',
        ),
    ],
)
def test_waves_errors_name_the_file_line_and_key(tmp_path: Path, waves: str, error: str) -> None:
    path = plan(tmp_path, waves)
    with pytest.raises(PlanError) as raised:
        load_plan(path)
    assert error in str(raised.value)
    assert str(raised.value).startswith(f"{path}:{raised.value.line}:") and raised.value.line


def confirm_of(root: Path, wave: str) -> Confirm:
    app = CockpitApp(
        load_plan(
            plan(root, waves_toml(("early-birds", "copilot-finance", "wave1", "wave2"), ("early-birds",)))
        ),
        poll=False,
    )

    async def scenario() -> Confirm:
        async with app.run_test(size=(120, 40)) as pilot:
            feed(app)
            await pilot.pause()
            table = app.screen.query_one("#waves", FleetTable)
            table.move_cursor(app.plan.waves.index(wave))
            await pilot.press("L")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            assert isinstance(app.screen, Confirm)
            return app.screen

    return asyncio.run(scenario())


def test_only_a_wave_the_plan_marks_as_pilot_launches_with_a_plain_yes(tmp_path: Path) -> None:
    assert confirm_of(tmp_path, "early-birds").typed is None  # pilot = true, whatever its name
    assert (
        confirm_of(tmp_path, "copilot-finance").typed == "copilot-finance"
    )  # "pilot" in the name: no matter


def test_a_launch_never_blocks_the_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner's start is replaced by a process that waits until the test lets it go: while it
    # waits, the view must go on answering keys, then say how the start went.
    release = tmp_path / "release"
    wait = f"import os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.01)\n"
    waiting = [sys.executable, "-c", wait]
    monkeypatch.setattr(cockpit.app, "runner_argv", lambda *a, **k: waiting)
    app = CockpitApp(
        load_plan(
            plan(tmp_path, waves_toml(("early-birds", "copilot-finance", "wave1", "wave2"), ("early-birds",)))
        ),
        poll=False,
    )

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            feed(app)
            await pilot.pause()
            await pilot.press("L")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            await pilot.press("y")
            await until(pilot, lambda: any("starting wave early-birds" in n for n in said(app)))
            await pilot.press("question_mark")  # the UI thread is free: the help opens
            await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            assert not any("started in the background" in n for n in said(app))
            release.touch()  # the runner's start returns
            await until(
                pilot,
                lambda: any("wave early-birds started in the background" in n for n in said(app)),
            )

    asyncio.run(scenario())


def test_a_store_that_can_no_longer_be_read_is_said_and_the_cockpit_stays_up(tmp_path: Path) -> None:
    """The poller's thread must not die quietly: the view would freeze on its last picture, which
    reads as an all-clear. A store replaced by garbage under a running cockpit is said, and the
    cockpit goes on (and would show the store again once it is readable)."""
    plan = load_plan(write_plan(tmp_path, Unreachable(10143), Unreachable(20143)))
    StateStore(plan.state_db).close()

    async def scenario() -> list[str]:
        app = CockpitApp(plan, read_only=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.8)  # a first snapshot or two
            for suffix in ("-wal", "-shm"):
                plan.state_db.with_name(plan.state_db.name + suffix).unlink(missing_ok=True)
            plan.state_db.write_bytes(b"not a database, " * 512)
            deadline = time.monotonic() + 30  # a bound for a loaded machine, not a pace
            while not any("background work failed" in m for m in said(app)) and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert app.is_running
            return said(app)

    shown = asyncio.run(scenario())
    assert any("background work failed" in m and "state.db" in m for m in shown), shown

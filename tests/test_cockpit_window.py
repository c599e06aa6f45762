"""The cutover window in the cockpit (#11): every wave's stage readable at 80×24, the audit trail
view, ``S`` starting ``cutover switch`` detached behind the interlock (refused read-only; a wrong name
refused in the dialog), and the helpdesk's triage saying where a user's mail is served now
(``cutover triage --output json``). The stages are made through the store's own API (begin_step /
end_step), as the window's driver records them; the cockpit's switch runs the real ``cutover
switch`` in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cockpit_lab import feed
from dovecot_lab import Unreachable, waves_toml, write_plan
from test_cockpit import flash_text
from textual.pilot import Pilot
from textual.widgets import Input

from cockpit.app import CockpitApp
from cockpit.screens.audit import AuditView
from cockpit.screens.dialogs import Interlock
from cockpit.widgets.fleet_table import FleetTable
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state.read_models.snapshot import take
from runners.state.read_models.window import stamp
from runners.state.statuses import StepStatus
from runners.state.store import StateStore
from runners.state.wave_step_rows import Actor

#: Each wave and the main steps it went through (the last one done is its stage).
STAGES = {
    "w-copy": (),
    "w-ready": ("ready",),
    "w-final": ("ready", "final-pass"),
    "w-switch": ("ready", "final-pass", "switched"),
    "w-settle": ("ready", "final-pass", "switched", "settled"),
    "w-close": ("ready", "final-pass", "switched", "settled", "closed"),
    "w-back": ("ready", "final-pass", "switched", "rolled-back"),
    "w-held": ("ready", "final-pass"),
}
WORDS = {
    "w-copy": "copying",
    "w-ready": "ready",
    "w-final": "final pass",
    "w-switch": "switched",
    "w-settle": "settled",
    "w-close": "closed",
    "w-back": "rolled back",
    "w-held": "switching…",
}
OPERATOR = Actor("alice", "jump-host", "127.0.0.1 50022 22")
REASON = "change 4711 approved by the customer"


def window_plan(root: Path, monkeypatch: pytest.MonkeyPatch) -> Plan:
    """One mailbox per wave; servers never contacted (nothing here copies mail)."""
    monkeypatch.setenv("SRC_MASTER_PW", "unused")
    monkeypatch.setenv("DST_MASTER_PW", "unused")
    fleet = tuple((f"{w}@legacy.test", f"{w}@example.net", w) for w in STAGES)
    path = write_plan(
        root, Unreachable(10143), Unreachable(20143), mailboxes=fleet, tail=waves_toml(tuple(STAGES))
    )
    plan = load_plan(path)
    store = StateStore(plan.state_db)
    for wave, steps in STAGES.items():
        for step in steps:
            params = (
                {"confirm": wave, "reason": REASON, "force": False, "overridden": True}
                if step == "switched"
                else {}
            )
            did = {"late_messages": 3} if step == "settled" else {}
            store.end_step(store.begin_step(wave, step, OPERATOR, params), StepStatus.DONE, did=did)
    # A refused attempt after the stage: the detail line names it.
    store.end_step(store.begin_step("w-ready", "final-pass", OPERATOR, {}), StepStatus.REFUSED)
    # Another operator's step in flight: a live lease (this test's pid, far from expiry).
    assert store.take_wave_lease("w-held", "bob@other-host", 3600) is None
    store.close()
    return plan


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 60) -> None:
    """Let the app run until ``condition`` holds; fail if it doesn't within ``seconds`` (a bound, not a pace)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


def select_wave(app: CockpitApp, wave: str) -> None:
    table = app.screen.query_one("#waves", FleetTable)
    table.move_cursor(table.keys.index(wave))


def test_every_waves_stage_is_readable_in_the_overview_at_80_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = window_plan(tmp_path, monkeypatch)

    async def scenario() -> dict[str, str]:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.pause()
            lines = {}
            for wave in STAGES:
                select_wave(app, wave)
                await pilot.pause()
                lines[wave] = str(app.screen.query_one("#wave-detail").render())
            # What the terminal shows, line by line: the table's rows as drawn at 80 columns.
            screen = app.export_screenshot()
            lines["screen"] = screen
            return lines

    seen = asyncio.run(scenario())
    table_text = visible_text(seen["screen"])
    for wave, words in WORDS.items():
        row = next(line for line in table_text if line.lstrip().startswith(wave))
        assert f" {words} " in row + " ", (wave, row)  # whole: nothing cut to two letters
    assert "window: settled since" in seen["w-settle"] and "3 late message(s) caught" in seen["w-settle"]
    assert "held by bob@other-host" in seen["w-held"]
    assert "last attempt final-pass: refused" in seen["w-ready"]
    assert f"by {OPERATOR}" in seen["w-switch"]


def visible_text(svg: str) -> list[str]:
    """The screenshot's text lines (the SVG keeps each terminal line's text in <text> runs)."""
    import html
    import re

    rows: dict[str, list[str]] = {}
    for y, text in re.findall(r'<text[^>]*?y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(y, []).append(html.unescape(text).replace("\xa0", " "))
    return ["".join(parts) for _, parts in sorted(rows.items(), key=lambda item: float(item[0]))]


def test_the_audit_view_lists_a_switch_with_its_parameters_by_wave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = window_plan(tmp_path, monkeypatch)

    async def scenario() -> None:
        app = CockpitApp(plan, read_only=True, poll=False)  # the helpdesk may read the trail
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.press("a")
            await pilot.pause()
            view = app.screen
            assert isinstance(view, AuditView)
            assert {e.wave for e in view.entries} == set(STAGES) - {"w-copy"}
            await pilot.press("escape", "colon", *"audit w-switch", "enter")
            await pilot.pause()
            view = app.screen
            assert isinstance(view, AuditView) and view.wave == "w-switch"
            table = view.query_one("#audit", FleetTable)
            switched = [k for k in table.keys if table.cells(k)[2] == "switched"]
            assert len(switched) == 1 and {e.wave for e in view.entries} == {"w-switch"}
            cells = table.cells(switched[0])
            assert cells[1] == str(OPERATOR) and REASON in cells[4] and '"confirm": "w-switch"' in cells[4]
            table.move_cursor(table.keys.index(switched[0]))
            await pilot.pause()
            detail = str(view.query_one("#row-detail").render())
            assert "alice@jump-host (ssh from 127.0.0.1 50022 22) switched (wave w-switch)" in detail
            assert '"overridden": true' in detail
            await pilot.press("slash", *"final-pass", "enter")  # narrows by text
            await pilot.pause()
            assert [table.cells(k)[2] for k in table.keys] == ["final-pass"]

    asyncio.run(scenario())


def test_switch_is_refused_read_only_and_the_dialog_refuses_a_wrong_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = window_plan(tmp_path, monkeypatch)
    logs = plan.state_dir / "logs"

    async def read_only() -> str:
        app = CockpitApp(plan, read_only=True, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            select_wave(app, "w-final")
            await pilot.press("S")
            await pilot.pause()
            assert not isinstance(app.screen, Interlock)
            return flash_text(app)

    assert (
        asyncio.run(read_only()) == "read-only cockpit: switch wave refused (it would write the state store)"
    )

    async def wrong_name() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            select_wave(app, "w-final")  # its next step is the switch: always asked
            await pilot.press("S")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, Interlock) and dialog.wave == "w-final"
            await pilot.press(*"w-ready")
            await pilot.press("tab")  # to the reason box
            await pilot.press(*REASON, "enter")
            await pilot.pause()
            assert app.screen is dialog  # still open, saying why
            assert "'w-ready' is not the wave's name (w-final): nothing was done" in str(
                dialog.query_one(".dialog-error").render()
            )
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, Interlock)

    asyncio.run(wrong_name())
    store = StateStore(plan.state_db)
    assert [s.step for s in store.wave_steps("w-final")] == ["ready", "final-pass"]  # nothing ran
    assert not logs.exists() or not list(logs.glob("switch-*"))


def test_switch_from_the_cockpit_runs_cutover_switch_detached_with_the_typed_name_and_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """w-copy's next step is ready, whose conditions don't hold (no first pass): the name and a reason
    go to the real ``cutover switch``, in its own process, which records the step with them."""
    plan = window_plan(tmp_path, monkeypatch)
    store = StateStore(plan.state_db)

    def ready_done() -> bool:
        return any(s.step == "ready" and s.status == StepStatus.DONE for s in store.wave_steps("w-copy"))

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            select_wave(app, "w-copy")
            await pilot.press("S")
            await pilot.pause()
            assert isinstance(app.screen, Interlock)
            await pilot.press(*"w-copy", "enter")  # Enter in the name box: a reason is still needed
            await pilot.pause()
            assert isinstance(app.screen, Interlock) and app.screen.focused is app.screen.query_one(
                "#interlock-reason", Input
            )
            await pilot.press(*REASON, "enter")
            await until(pilot, ready_done)

            def ended() -> bool:  # the cockpit says how the step it started ended (and reaps it)
                feed(app)
                return any("ready of wave w-copy: done; log " in str(n.message) for n in app._notifications)

            await until(pilot, ended)
            assert not app._window_steps

    asyncio.run(scenario())
    step = next(s for s in store.wave_steps("w-copy") if s.step == "ready")
    assert step.params == {"confirm": "w-copy", "reason": REASON, "force": False, "overridden": True}
    assert any(not c["holds"] for c in step.checked)
    assert list((plan.state_dir / "logs").glob("switch-w-copy-*.log"))
    assert any("ready of wave w-copy (reason: " in e.detail for e in store.audit_trail("w-copy"))


def triage_json(plan: Plan, user: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "cockpit.cli", "triage", "--plan", str(plan.path), "--user", user,
         "--output", "json", "--no-compare"],
        capture_output=True, text=True, timeout=120, check=False, env=os.environ.copy(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_triage_says_where_a_users_mail_is_served_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = window_plan(tmp_path, monkeypatch)
    store = StateStore(plan.state_db)
    switched_at = next(s.ended for s in store.wave_steps("w-settle") if s.step == "switched")
    assert switched_at is not None

    settled = triage_json(plan, "w-settle@legacy.test")
    assert settled["served_by"] == "target" and settled["served_since"] == switched_at
    assert settled["stage"] == "settled" and settled["late_messages"] == 3
    assert str(settled["log_in_to"]).startswith(
        f"served by the target (imap://127.0.0.1:20143) since {stamp(switched_at)}"
    )

    legacy = triage_json(plan, "w-final@legacy.test")
    assert (
        legacy["served_by"] == "legacy" and legacy["served_since"] is None and legacy["late_messages"] is None
    )
    assert str(legacy["log_in_to"]).startswith("legacy (imap://127.0.0.1:10143), since before the migration")
    assert legacy["complete"] is None  # no run has touched it

    back = triage_json(plan, "w-back@legacy.test")
    assert back["served_by"] == "legacy" and "rolled back" in str(back["log_in_to"])

    text = subprocess.run(
        [sys.executable, "-m", "cockpit.cli", "triage", "--plan", str(plan.path), "--user", "w-switch@legacy.test",
         "--no-compare"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "LOG IN TO NOW\n  served by the target" in text.stdout
    assert "late mail caught for wave w-switch: none counted yet (the wave is not settled)" in text.stdout


def test_a_store_from_before_the_window_reads_every_wave_as_copying_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helpdesk's read-only cockpit can't add the window's tables to an older store: no stage recorded."""
    import sqlite3

    from runners.state.read_models.window import wave_windows

    plan = window_plan(tmp_path, monkeypatch)
    with sqlite3.connect(plan.state_db) as db:
        db.execute("DROP TABLE wave_steps")
        db.execute("DROP TABLE wave_leases")
    reader = StateStore(plan.state_db, read_only=True)
    windows = wave_windows(reader, list(STAGES))
    assert {w.stage for w in windows.values()} == {"copying"} and not any(w.holder for w in windows.values())
    assert [w.window.label for w in take(reader, plan).waves if w.window] == ["copying"] * len(STAGES)

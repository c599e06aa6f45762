"""The cockpit at 3 a.m. (issue 15), driven key by key with Pilot over a real state store and real
check runs against Dovecot: a partial re-run keeps the rest of readiness, a refused dialog keeps the
keys typed next, controls that would do nothing say so, dialogs name the blockers, and every action
leaves a trace in the log view."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cockpit_lab import open_mailbox
from dovecot_lab import Lab
from servers.dovecot import DovecotServer
from test_cockpit import app_for, feed, flash_text, open_mailboxes
from test_cockpit import lab as cockpit_lab
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Input, RichLog
from textual.widgets._toast import Toast, ToastRack

from cockpit.app import CockpitApp
from cockpit.screens.dialogs import Confirm, DialogError, ReasonPrompt
from cockpit.screens.log import LogView
from cockpit.screens.mailbox import FailureView, MailboxView
from cockpit.screens.overview import OverviewView
from cockpit.screens.readiness import ReadinessView
from runners.plan.loader import load_plan
from runners.state.operators import operator_id
from runners.state.read_models.snapshot import take
from runners.state.store import StateStore


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: object) -> Lab:
    """test_cockpit's lab: alice (one message too big for the target) and bob in the pilot wave, run
    once; carol, who can't log in to the source, in the full wave."""
    return cockpit_lab.__wrapped__(tmp_path, source_dovecot, dovecot_factory)  # type: ignore[attr-defined]


def _store(lab: Lab) -> StateStore:
    return StateStore(load_plan(lab.plan).state_db)


def test_a_partial_rerun_keeps_the_other_categories_blockers(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in lab.env.items():  # the cockpit runs the re-run itself: the master passwords
        if name.endswith("_MASTER_PW"):
            monkeypatch.setenv(name, value)
    # A full run with blockers in two categories: carol can't log in to the source (source), and
    # alice's 1.5 MB message is larger than the target accepts (capacity).
    plan_text = lab.plan.read_text(encoding="utf-8")
    lab.plan.write_text(
        plan_text.replace("[target]\n", "[target]\nmax_message_bytes = 1000000\n", 1), "utf-8"
    )
    lab.cutover("check", "--plan", str(lab.plan))
    before = take(_store(lab), load_plan(lab.plan), query=None).readiness
    assert before is not None
    assert before.by_category["source"]["blocker"] == 1 and before.by_category["capacity"]["blocker"] >= 1

    async def scenario() -> tuple[str, list[tuple[str, str]]]:
        app = app_for(lab)
        async with app.run_test(size=(160, 48)) as pilot:
            feed(app)
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, ReadinessView)
            assert app.screen.findings[0].check_id == "SRC-LOGIN-002"  # worst first, then by check
            await pilot.press("full_stop")  # re-run only that check
            await app.workers.wait_for_complete()
            await pilot.pause()
            feed(app)
            await pilot.pause()
            view = app.screen
            assert isinstance(view, ReadinessView) and not view.running
            summary = str(view.query_one("#readiness-summary").render())
            return summary, [(f.check_id, f.severity) for f in view.findings]

    summary, shown = asyncio.run(scenario())
    store = _store(lab)
    assert [r["scope"] for r in store.query("SELECT scope FROM check_runs ORDER BY id")] == [
        "all",
        ":SRC-LOGIN-002",
    ]
    after = take(store, load_plan(lab.plan), query=None).readiness
    assert after is not None and after.run_id != before.run_id
    # The capacity blocker is still there, in the overview's counts and in the readiness table.
    assert after.by_category["capacity"] == before.by_category["capacity"]
    assert after.by_category["source"]["blocker"] == 1
    assert ("TGT-SIZE-006", "blocker") in shown and ("SRC-LOGIN-002", "blocker") in shown
    # Each category says when it was last checked and by whom; source by the newer run.
    checked = {c.category: c for c in after.checked}
    assert checked["source"].run_id == after.run_id and checked["capacity"].run_id == before.run_id
    assert {c.operator for c in after.checked} == {operator_id()}
    assert "source: 1 blocker, 1 warning; checked " in summary and f"by {operator_id()}" in summary
    assert "capacity: " in summary
    # The re-run is in the log: who asked for it.
    assert any(
        e.message == f"{operator_id()}: re-run of checks: SRC-LOGIN-002" for e in store.recent_events(20)
    )


def test_text_typed_after_a_refused_reason_lands_in_the_reason_box(lab: Lab) -> None:
    """The incident: s, Enter with no reason, then "Cancelled by user" typed: C must not open Cancel and
    y must not confirm it. The reason dialog stays open with its error, and the text is the reason."""

    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            (issue,) = _store(lab).mailbox_detail("alice").issues
            app.open_failure("alice", issue)
            await pilot.pause()
            await pilot.press("s")
            await pilot.pause()
            assert isinstance(app.screen, ReasonPrompt)
            await pilot.press("enter")  # an empty reason
            await pilot.pause()
            assert isinstance(app.screen, ReasonPrompt)  # still open, saying why
            assert app.screen.query_one(DialogError).text.startswith("a reason is required")
            for key in "Cancelled by user":
                await pilot.press("space" if key == " " else key)
                await pilot.pause()
                assert isinstance(app.screen, ReasonPrompt), key  # no Cancel dialog, nothing else
            assert app.screen.query_one("#reason", Input).value == "Cancelled by user"
            assert _store(lab).query("SELECT COUNT(*) AS n FROM controls")[0]["n"] == 0
            await pilot.press("enter")
            await pilot.pause()
            assert not isinstance(app.screen, ReasonPrompt | Confirm)

    asyncio.run(scenario())
    store = _store(lab)
    assert store.query("SELECT COUNT(*) AS n FROM controls")[0]["n"] == 0  # nothing was cancelled
    # The skipped message stays visible, as skipped, with who decided and why.
    (issue,) = store.mailbox_detail("alice").issues
    assert (issue.status, issue.reason) == (
        "waived",
        f"not copied, decided by {operator_id()}: Cancelled by user",
    )
    (event,) = [e for e in store.recent_events(20) if e.kind == "operator"]
    assert event.mailbox == "alice" and event.message.startswith(f"{operator_id()}: skip of INBOX UID ")


def test_the_command_bar_keeps_an_unknown_view_to_correct(lab: Lab) -> None:
    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.press("colon")
            for key in "mailbxes":
                await pilot.press(key)
            await pilot.press("enter")
            await pilot.pause()
            error = app.screen.query_one(DialogError)
            assert error.text.startswith("unknown view 'mailbxes'")
            for key in "Cy":  # keys of the app's actions: they are text here
                await pilot.press(key)
            assert app.screen.query_one("#command", Input).value == "mailbxesCy"
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, OverviewView)

    asyncio.run(scenario())


def test_controls_that_would_do_nothing_say_so(lab: Lab) -> None:
    """The fixture's pilot wave finished (partial); the full wave never ran."""

    async def scenario() -> dict[str, str]:
        app = app_for(lab)
        said: dict[str, str] = {}
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.pause()
            for key in ("P", "R", "C"):  # the cursor is on the pilot wave
                await pilot.press(key)
                await pilot.pause()
                assert isinstance(app.screen, OverviewView), key
                said[key] = flash_text(app)
            await pilot.press("down")  # the full wave: nothing failed there
            await pilot.press("F")
            await pilot.pause()
            assert isinstance(app.screen, OverviewView)
            said["F"] = flash_text(app)
        return said

    assert asyncio.run(scenario()) == {
        "P": "wave pilot is not running (its last run ended partial): nothing to pause",
        "R": "nothing is paused in wave pilot: nothing to resume",
        "C": "wave pilot is not running (its last run ended partial): nothing to cancel",
        "F": "nothing failed or was skipped in wave full: nothing to retry",
    }
    assert _store(lab).query("SELECT COUNT(*) AS n FROM controls")[0]["n"] == 0


def test_launch_and_retry_dialogs_name_the_counts_and_the_blockers(lab: Lab) -> None:
    lab.cutover("check", "--plan", str(lab.plan), "--only", "SRC-LOGIN-002")  # carol can't log in

    async def scenario() -> tuple[list[str], list[str]]:
        app = app_for(lab)
        async with app.run_test(size=(160, 48)) as pilot:
            feed(app)
            await pilot.pause()
            await pilot.press("down", "L")  # the full wave: carol
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            launch = app.screen.operations
            await pilot.press("escape")
            await pilot.press("up", "F")  # the pilot wave: alice's oversized message failed
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            retry = app.screen.operations
        return launch, retry

    launch, retry = asyncio.run(scenario())
    assert "copy 1 mailbox(es): carol" in launch
    assert "BLOCKERS: 1 mailbox(es) blocked: carol (SRC-LOGIN-002)" in launch
    assert "messages to retry: 1 (1 failed, 0 skipped); mailboxes that failed as a whole: 0" in retry
    assert "readiness: no blocker about these mailboxes" in retry


def test_the_log_shows_who_did_what_filters_and_follows(lab: Lab) -> None:
    store = _store(lab)
    for n in range(60):  # more lines than the screen has
        store.event(None, "info", "run", f"line {n}")

    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_mailboxes(app, pilot)
            store.start_run("pilot", "delta", 1)  # the wave runs again: pause means something
            (alice,) = store.query("SELECT id FROM mailboxes WHERE source = 'alice'")
            store.set_mailbox_state(alice["id"], "running")
            feed(app)
            await pilot.press("P")
            await pilot.pause()
            await pilot.press("y")
            await pilot.pause()
            await pilot.press("l")
            await pilot.pause()
            feed(app)
            await pilot.pause()
            view = app.screen
            assert isinstance(view, LogView)
            log = view.query_one("#log", RichLog)
            text = "\n".join(strip.text for strip in log.lines)
            assert f"{operator_id()}: pause of mailbox alice" in text
            assert view.following and log.scroll_y == log.max_scroll_y > 0
            # Scrolled up to read: a new line doesn't move the view.
            await pilot.press("home")
            await pilot.pause()
            top = log.scroll_y
            store.event(None, "info", "run", "a newer line")
            feed(app)
            await pilot.pause()
            assert log.scroll_y == top and not view.following
            await pilot.press("end")  # follow again
            await pilot.pause()
            store.event(None, "info", "run", "the newest line")
            feed(app)
            await pilot.pause()
            assert view.following and "the newest line" in log.lines[-1].text
            # "/" keeps the lines that match.
            await pilot.press("slash")
            for key in "pause":
                await pilot.press(key)
            await pilot.press("enter")
            await pilot.pause()
            lines = [strip.text for strip in log.lines]
            assert lines and all("pause" in line for line in lines)
            await pilot.press("escape")  # clears the filter
            await pilot.pause()
            assert isinstance(app.screen, LogView) and len(log.lines) > len(lines)

    asyncio.run(scenario())


def test_the_mailbox_view_lists_a_skipped_message(lab: Lab) -> None:
    store = _store(lab)
    (issue,) = store.mailbox_detail("alice").issues
    store.waive_message("alice", issue.folder, issue.uid, "archived", "ops@host")

    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(160, 48)) as pilot:
            await open_mailbox(app, pilot, "alice")
            assert isinstance(app.screen, MailboxView)
            assert app.screen.query_one("#issues").row_count == 1  # type: ignore[attr-defined]

    asyncio.run(scenario())
    assert FailureView  # the view a skip is made from (test_cockpit.py)


async def toasts_of(app: CockpitApp, pilot: Pilot[None]) -> list[Region]:
    """Where the notifications are drawn (Textual shows them a moment after ``notify``)."""
    for _ in range(20):
        await pilot.pause()
        regions = [t.region for t in app.screen.get_child_by_type(ToastRack).query(Toast) if t.region]
        if regions:
            return regions
    return []


def test_notifications_cover_neither_the_eta_nor_the_newest_log_lines(lab: Lab) -> None:
    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            feed(app)
            await pilot.pause()
            app.notify("pilot wave retry started in the background; it runs on after the cockpit closes")
            await pilot.pause()
            eta = app.screen.query_one("#throughput").region  # "… ETA …" and the window
            toasts = await toasts_of(app, pilot)
            assert toasts and not any(t.overlaps(eta) for t in toasts), (toasts, eta)
            await pilot.press("l")
            await pilot.pause()
            feed(app)
            app.notify("pause requested")
            await pilot.pause()
            log = app.screen.query_one("#log").region
            newest = Region(log.x, log.bottom - 3, log.width, 3)  # the newest lines are at the bottom
            toasts = await toasts_of(app, pilot)
            assert toasts and not any(t.overlaps(newest) for t in toasts), (toasts, newest)

    asyncio.run(scenario())


def test_the_readiness_filter_takes_the_views_own_keys_as_text(lab: Lab) -> None:
    """`r`, `c` and `.` re-run checks in the readiness view; typed into its filter they are text."""
    lab.cutover("check", "--plan", str(lab.plan), "--only", "SRC-LOGIN-002")

    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.press("r")
            await pilot.pause()
            view = app.screen
            assert isinstance(view, ReadinessView)
            await pilot.press("slash", *"carol", "enter")
            await pilot.pause()
            assert view.filter == "carol" and not view.running
            assert [(f.check_id, f.object_id) for f in view.findings] == [("SRC-LOGIN-002", "carol")]
            await pilot.press("escape")  # clears the filter, stays
            await pilot.pause()
            assert app.screen is view and view.filter == "" and len(view.findings) == 3

    asyncio.run(scenario())
    assert _store(lab).query("SELECT COUNT(*) AS n FROM check_runs")[0]["n"] == 1  # no re-run

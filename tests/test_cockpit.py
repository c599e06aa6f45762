"""The cockpit driven by Textual's Pilot over a real state store (a real run against Dovecot)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cockpit_lab import feed, open_mailbox
from corpus import message
from dovecot_lab import PILOT_AND_LATER, Lab, make_lab, wait_for
from servers import imapfill
from servers.dovecot import DovecotServer
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from cockpit.app import CockpitApp
from cockpit.screens.dialogs import Confirm, DialogError
from cockpit.screens.mailbox import FailureView, MailboxView
from cockpit.screens.mailboxes import MailboxesView
from cockpit.screens.overview import OverviewView
from cockpit.widgets.flash import Flash, flash
from cockpit.widgets.fleet_table import FleetTable
from runners.plan.loader import load_plan
from runners.state.operators import operator_id
from runners.state.read_models.snapshot import take
from runners.state.store import StateStore


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: object) -> Lab:
    target = dovecot_factory(quota_max_mail_size="1M")  # type: ignore[operator]
    for n in range(4):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"m{n}"))
    imapfill.append(source_dovecot, "alice", "INBOX", message("too big", "B" * 1_500_000))
    imapfill.append(source_dovecot, "bob", "INBOX", message("fine"))
    lab = make_lab(
        tmp_path / "lab",
        source_dovecot,
        target,
        mailboxes=PILOT_AND_LATER,
        pilots=("pilot",),  # launched with a plain yes
    )
    lab.run("pilot")
    return lab


def app_for(lab: Lab, read_only: bool = False) -> CockpitApp:
    return CockpitApp(load_plan(lab.plan), read_only=read_only, poll=False)


async def open_mailboxes(app: CockpitApp, pilot: Pilot[None]) -> None:
    """Press m, with a snapshot before and after (the poller's part)."""
    feed(app)
    await pilot.press("m")
    await pilot.pause()
    feed(app)
    await pilot.pause()


def test_drill_down_from_overview_to_the_servers_words(lab: Lab) -> None:
    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(160, 48)) as pilot:
            feed(app)
            await pilot.pause()
            assert isinstance(app.screen, OverviewView)
            waves = app.screen.query_one("#waves")
            assert waves.row_count == 2  # type: ignore[attr-defined]
            await pilot.press("m")
            await pilot.pause()
            assert isinstance(app.screen, MailboxesView)
            feed(app)
            await pilot.pause()
            table = app.screen.query_one("#mailboxes", FleetTable)
            # Default filter "not OK": alice (a failure) and carol (never run) need attention, bob doesn't.
            assert "alice" in table.keys and "bob" not in table.keys
            table.move_cursor(table.keys.index("alice"))
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, MailboxView) and app.screen.source == "alice"
            feed(app)
            await pilot.pause()
            issues = app.screen.query_one("#issues")
            assert issues.row_count == 1  # type: ignore[attr-defined]
            issues.focus()
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, FailureView)
            assert "Mail size is larger than the maximum size" in app.screen.text()
            for expected in (MailboxView, MailboxesView, OverviewView):
                await pilot.press("escape")
                await pilot.pause()
                assert isinstance(app.screen, expected)

    asyncio.run(scenario())


def test_the_mailbox_view_opened_again_on_another_mailbox_shows_nothing_of_the_last(lab: Lab) -> None:
    """One mailbox view is kept and opened again (composing it was most of Enter's cost): the next
    mailbox's view starts empty, never with the last one's failures, and then shows its own."""

    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(160, 48)) as pilot:
            await open_mailbox(app, pilot, "alice")
            first = app.screen
            assert isinstance(first, MailboxView) and first.query_one("#issues", FleetTable).row_count == 1
            flash(first, "alice: nothing to pause")  # what a refused key says, for a few seconds
            await pilot.pause()
            assert flash_text(app) == "alice: nothing to pause"
            await pilot.press("escape")
            await pilot.pause()
            app.open_mailbox("bob")
            await pilot.pause()
            assert app.screen is first and first.source == "bob" and first.detail is None
            assert "bob" in app.sub_title and "alice" not in app.sub_title
            for table in first.query(FleetTable):
                assert table.row_count == 0, table.id  # alice's rows are gone before bob's are read
            assert "alice" not in str(first.query_one("#summary", Static).render())
            assert flash_text(app) == ""  # nor what was said on alice's
            feed(app)
            await pilot.pause()
            assert first.detail is not None and first.detail.source == "bob"
            assert first.query_one("#folders", FleetTable).keys == ("INBOX",)
            assert first.query_one("#issues", FleetTable).row_count == 0
            assert "bob → bob" in str(first.query_one("#summary", Static).render())
            # Opened from within itself (a stacked view of another mailbox) it is a view of its own.
            app.open_mailbox("alice")
            await pilot.pause()
            assert isinstance(app.screen, MailboxView) and app.screen is not first
            assert app.screen.source == "alice" and first.source == "bob"

    asyncio.run(scenario())


def flash_text(app: CockpitApp) -> str:
    """The flash line of the screen on top (k9s): where a refused key says why."""
    line = app.screen.query_one_optional(Flash)
    return line.text if line is not None else ""


def test_read_only_refuses_every_change_visibly_in_the_flash_line(lab: Lab) -> None:
    from cockpit.screens.readiness import ReadinessView

    refused: dict[str, str] = {}

    async def press_refused(app: CockpitApp, pilot: Pilot[None], key: str) -> None:
        line = app.screen.query_one_optional(Flash)
        if line is not None:
            line.clear()
        screen = app.screen
        await pilot.press(key)
        await pilot.pause()
        assert app.screen is screen, key  # no dialog, no view: refused
        refused[key] = flash_text(app)

    async def scenario() -> None:
        app = app_for(lab, read_only=True)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.pause()
            for key in ("L", "P", "R", "C", "F"):
                await press_refused(app, pilot, key)
            assert app.check_action("launch", ()) is False and app.check_action("goto", ("log",)) is True
            app.action_launch()  # even called directly
            await pilot.pause()
            assert not isinstance(app.screen, Confirm)
            await pilot.press("r")  # the readiness view: re-running checks writes their results
            await pilot.pause()
            assert isinstance(app.screen, ReadinessView)
            for key in ("r", "c", "full_stop"):
                await press_refused(app, pilot, key)
            assert not app.screen.running
            (issue,) = StateStore(app.plan.state_db).mailbox_detail("alice").issues
            app.open_failure("alice", issue)
            await pilot.pause()
            for key in ("t", "s"):
                await press_refused(app, pilot, key)
                assert isinstance(app.screen, FailureView)

    asyncio.run(scenario())
    assert refused == {
        "L": "read-only cockpit: launch wave refused (it would write the state store)",
        "P": "read-only cockpit: pause refused (it would write the state store)",
        "R": "read-only cockpit: resume refused (it would write the state store)",
        "C": "read-only cockpit: cancel refused (it would write the state store)",
        "F": "read-only cockpit: retry failed items refused (it would write the state store)",
        "r": "read-only cockpit: re-running checks refused (it would write the state store)",
        "c": "read-only cockpit: re-running checks refused (it would write the state store)",
        "full_stop": "read-only cockpit: re-running checks refused (it would write the state store)",
        "t": "read-only cockpit: retry refused (it would write the state store)",
        "s": "read-only cockpit: skip with a reason refused (it would write the state store)",
    }
    store = StateStore(load_plan(lab.plan).state_db)
    assert store.query("SELECT COUNT(*) AS n FROM runs")[0]["n"] == 1  # only the fixture's own run
    assert store.query("SELECT COUNT(*) AS n FROM controls")[0]["n"] == 0
    assert store.query("SELECT COUNT(*) AS n FROM check_runs")[0]["n"] == 0
    assert store.query("SELECT COUNT(*) AS n FROM events WHERE kind = 'operator'")[0]["n"] == 0


def test_a_full_wave_needs_its_name_typed(lab: Lab) -> None:
    async def scenario() -> None:
        app = app_for(lab)
        launched: list[str] = []
        app.launch_wave = launched.append  # type: ignore[method-assign] - the detached runner is tested elsewhere
        async with app.run_test(size=(120, 40)) as pilot:
            feed(app)
            await pilot.pause()
            waves = app.screen.query_one("#waves")
            waves.move_cursor(1)  # type: ignore[attr-defined]  # the "full" wave
            await pilot.press("L")
            await pilot.pause()
            assert isinstance(app.screen, Confirm) and app.screen.typed == "full"
            assert any("copy 1 mailbox(es): carol" in op for op in app.screen.operations)
            assert any("a full first pass" in op for op in app.screen.operations)  # never run
            await pilot.press("y")  # a plain yes is not enough here
            await pilot.pause()
            assert isinstance(app.screen, Confirm) and not launched
            for char in "pilot":
                await pilot.press(char)
            await pilot.press("enter")
            await pilot.pause()
            assert not launched  # the wrong name: nothing done, and the dialog says so, still open
            assert isinstance(app.screen, Confirm)
            assert app.screen.query_one(DialogError).text.startswith(
                "'ypilot' is not the wave's name (full)"
            )  # y went into the box
            for char in "full":
                await pilot.press(char)
            await pilot.press("enter")
            await pilot.pause()
            assert launched == ["full"]

    asyncio.run(scenario())


def test_relaunching_a_wave_says_it_is_a_delta_pass_and_what_is_already_copied(lab: Lab) -> None:
    async def scenario() -> None:
        app = app_for(lab)
        app.launch_wave = lambda *a, **k: None  # type: ignore[method-assign]
        async with app.run_test(size=(120, 40)) as pilot:
            feed(app)
            await pilot.pause()
            await pilot.press("L")  # the cursor is on the pilot wave, which ran in the fixture
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            (kind,) = [op for op in app.screen.operations if "pass" in op]
            # alice's four small messages and bob's one were copied; the oversized one was refused.
            assert kind.startswith("a delta pass: copies only what is new or changed since run #1 (partial")
            assert "5 messages" in kind
            assert not any("still running" in op for op in app.screen.operations)
            await pilot.press("escape")
            # A runner (a live process: this one) holds a run of the wave: the confirmation says so.
            run_id = StateStore(app.plan.state_db).start_run("pilot", "delta", 1)
            await pilot.press("L")
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            assert any(f"run #{run_id} of this wave is still running" in op for op in app.screen.operations)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("key", "action", "state"),
    [("P", "pause", "running"), ("R", "resume", "paused"), ("C", "cancel", "running")],
)
def test_control_from_the_mailboxes_view_is_sent_through_the_store(
    lab: Lab, key: str, action: str, state: str
) -> None:
    store = StateStore(load_plan(lab.plan).state_db)
    store.start_run("pilot", "delta", 1)  # the wave runs again (this process holds it)
    (alice,) = store.query("SELECT id FROM mailboxes WHERE source = 'alice'")
    store.set_mailbox_state(alice["id"], state)  # a control that means something for alice

    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(120, 40)) as pilot:
            await open_mailboxes(app, pilot)
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            await pilot.press("y")
            await pilot.pause()
        rows = StateStore(app.plan.state_db).query("SELECT action, mailbox, requested_by FROM controls")
        assert [(r["action"], r["requested_by"], r["mailbox"]) for r in rows] == [
            (action, "cockpit", "alice")
        ]
        (event,) = store.recent_events(1)  # the log view's trace: who asked for what
        assert (event.kind, event.mailbox, event.message) == (
            "operator",
            "alice",
            f"{operator_id()}: {action} of mailbox alice",
        )

    asyncio.run(scenario())


def test_readiness_findings_drill_down_and_rerun(lab: Lab) -> None:
    from cockpit.screens.readiness import FindingView, ReadinessView

    lab.cutover("check", "--plan", str(lab.plan), "--only", "SRC-LOGIN-002", "--only", "SRC-AUTH-001")

    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(160, 48)) as pilot:
            feed(app)
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, ReadinessView)
            first = app.screen.findings[0]
            # Worst first: carol is in the plan but can't log in to the source.
            assert (first.severity, first.check_id, first.object_id) == ("blocker", "SRC-LOGIN-002", "carol")
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, FindingView) and "[AUTHORIZATIONFAILED]" in app.screen.text()
            await pilot.press("escape")
            await pilot.pause()
            await pilot.press("full_stop")  # re-run just that check
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert not app.screen.running  # type: ignore[attr-defined]
        runs = StateStore(app.plan.state_db).query("SELECT scope FROM check_runs ORDER BY id")
        assert [r["scope"] for r in runs] == [":SRC-AUTH-001,SRC-LOGIN-002", ":SRC-LOGIN-002"]

    asyncio.run(scenario())


def test_helpdesk_triage_of_one_user(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from cockpit.screens.triage import TriageView

    for name, value in lab.env.items():
        if name.endswith("_MASTER_PW"):
            monkeypatch.setenv(name, value)

    async def scenario() -> None:
        app = app_for(lab, read_only=True)  # the helpdesk's cockpit
        async with app.run_test(size=(160, 48)) as pilot:
            feed(app)
            await pilot.press("u")
            await pilot.pause()
            assert isinstance(app.screen, TriageView)
            for char in "alice":
                await pilot.press(char)
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            result = app.screen.result
            assert result is not None and result.entry is not None and result.entry.source == "alice"
            steps = {s.name: s for s in result.steps}
            assert steps["source login"].ok and steps["target login"].ok
            assert steps["source directory"].ok is None  # no directory in this plan
            # The too-big message is still missing on the target, and triage says why.
            assert steps["missing mail?"].ok is False and "1 failed" in steps["missing mail?"].detail
            text = app.screen.query_one("#triage").render()
            assert "Mail size is larger than the maximum size" in str(text)

    asyncio.run(scenario())


def test_skip_a_failed_message_with_a_reason_from_its_failure_view(lab: Lab) -> None:
    async def scenario(read_only: bool) -> None:
        app = app_for(lab, read_only=read_only)
        async with app.run_test(size=(160, 48)) as pilot:
            feed(app)
            (issue,) = StateStore(app.plan.state_db).mailbox_detail("alice").issues
            app.open_failure("alice", issue)
            await pilot.pause()
            assert isinstance(app.screen, FailureView)
            await pilot.press("s")
            await pilot.pause()
            if read_only:
                assert isinstance(app.screen, FailureView)  # hidden and refused
                return
            for char in "archived":
                await pilot.press(char)
            await pilot.press("enter")
            await pilot.pause()

    asyncio.run(scenario(read_only=True))
    store = StateStore(load_plan(lab.plan).state_db)
    assert store.query("SELECT COUNT(*) AS n FROM messages WHERE status = 'waived'")[0]["n"] == 0
    asyncio.run(scenario(read_only=False))
    (row,) = store.query("SELECT status, reason FROM messages WHERE status = 'waived'")
    assert row["reason"] == f"not copied, decided by {operator_id()}: archived"


def secrets_in_env(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner the cockpit starts inherits the environment, as from an operator's shell."""
    for name, value in lab.env.items():
        if name.endswith("_MASTER_PW"):
            monkeypatch.setenv(name, value)


def test_a_wave_launched_from_the_cockpit_runs_on_after_it_closes(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_in_env(lab, monkeypatch)
    imapfill.append(lab.source, "bob", "INBOX", message("arrived after the pilot"))
    store = StateStore(load_plan(lab.plan).state_db)

    async def launch_and_quit() -> None:
        app = CockpitApp(load_plan(lab.plan), poll=False)  # the real launch: a detached runner
        async with app.run_test(size=(120, 40)) as pilot:
            feed(app)
            await pilot.press("L")  # the pilot wave, under the cursor
            await pilot.pause()
            await pilot.press("y")
            await pilot.pause()
            await pilot.press("q")  # the cockpit goes away at once

    asyncio.run(launch_and_quit())
    wait_for(lambda: store.query("SELECT status FROM runs WHERE id = 2 AND status != 'running'"), 60)
    (run,) = store.query("SELECT wave, kind, status FROM runs WHERE id = 2")
    assert (run["wave"], run["kind"], run["status"]) == ("pilot", "delta", "partial")  # alice's big one
    subjects = [
        b.split(b"Subject: ")[1].split(b"\r\n")[0]
        for b, _, _ in imapfill.folder_snapshot(lab.target, "bob")["INBOX"]
    ]
    assert subjects.count(b"arrived after the pilot") == 1  # the delta pass copied it, once

    # Two cockpits opened now see the same thing: they read one store.
    snapshots = [take(StateStore(load_plan(lab.plan).state_db), load_plan(lab.plan)) for _ in range(2)]
    assert snapshots[0].waves == snapshots[1].waves and snapshots[0].waves[0].last_run_status == "partial"


def test_retry_failed_items_from_a_mailbox_runs_a_real_retry(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_in_env(lab, monkeypatch)
    store = StateStore(load_plan(lab.plan).state_db)

    async def retry() -> None:
        app = CockpitApp(load_plan(lab.plan), poll=False)
        async with app.run_test(size=(160, 48)) as pilot:
            app.open_mailbox("alice")
            await pilot.pause()
            await pilot.press("F")
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            assert any("--retry-failed --mailbox alice" in op for op in app.screen.operations)
            await pilot.press("y")
            await pilot.pause()

    asyncio.run(retry())
    wait_for(lambda: store.query("SELECT 1 FROM runs WHERE kind = 'retry' AND status != 'running'"), 60)
    (issue,) = store.mailbox_detail("alice").issues
    history = store.message_history("alice", issue.folder, issue.uid)
    # Tried again by the retry run, refused again by the target's size limit, in its own words.
    assert [a.status for a in history] == ["failed", "failed"] and issue.attempts == 2
    assert "Mail size is larger than the maximum size" in (history[-1].reason or "")


def test_command_bar_log_help_search_and_copy(lab: Lab) -> None:
    from textual.widgets import RichLog

    from cockpit.screens.dialogs import HelpScreen
    from cockpit.screens.log import LogView

    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(160, 48)) as pilot:
            feed(app)
            await pilot.press("colon", *":mailboxes pilot /ali"[1:], "enter")
            await pilot.pause()
            feed(app)
            await pilot.pause()
            assert isinstance(app.screen, MailboxesView)
            assert (app.screen.wave, app.screen.filter) == ("pilot", "ali")
            assert app.screen.query_one(FleetTable).keys == ("alice",)

            await pilot.press("l")
            await pilot.pause()
            feed(app)
            await pilot.pause()
            assert isinstance(app.screen, LogView)
            shown = " ".join(line.text for line in app.screen.query_one(RichLog).lines)
            assert "full pass of wave pilot: 2 mailbox(es)" in shown and "run 1 partial" in shown
            assert "alice INBOX: UID 5" in shown and "maximum size allowed by server" in shown

            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            await pilot.press(*"pause")
            await pilot.pause()
            table = app.screen.query_one("#help-table", DataTable)
            shown = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
            assert shown == ["Pause"]
            await pilot.press("escape")
            await pilot.pause()

            (issue,) = app.store.mailbox_detail("alice").issues
            app.open_failure("alice", issue)
            await pilot.pause()
            await pilot.press("y")  # OSC 52: the terminal's clipboard, over SSH and tmux too
            await pilot.pause()
            assert "Mail size is larger than the maximum size" in app.clipboard
            assert "UID       5" in app.clipboard and "mailbox   alice" in app.clipboard

    asyncio.run(scenario())


def test_filter_sort_and_esc_going_back_one_step_at_a_time(lab: Lab) -> None:
    async def scenario() -> None:
        app = app_for(lab)
        async with app.run_test(size=(160, 48)) as pilot:
            await open_mailboxes(app, pilot)
            view = app.screen
            assert isinstance(view, MailboxesView)
            table = view.query_one(FleetTable)
            assert table.keys == ("alice",)  # "not OK": bob is done, carol's wave never ran
            await pilot.press("slash", "enter")  # an empty filter: every mailbox
            feed(app)
            await pilot.pause()
            assert table.keys == ("alice", "bob", "carol")
            with StateStore(app.plan.state_db).transaction() as db:  # as a runner would record it
                db.execute("UPDATE mailboxes SET failed = 3 WHERE source = 'bob'")
            await pilot.press("s")  # mailbox → failed
            feed(app)
            await pilot.pause()
            assert view.sort_key == "failed"
            assert table.keys == ("bob", "alice", "carol")  # most failures first
            await pilot.press("slash", *"bo", "enter")
            feed(app)
            await pilot.pause()
            assert table.keys == ("bob",)
            await pilot.press("slash")
            await pilot.pause()
            assert view.query_one("#filter").display
            await pilot.press("escape")  # 1: closes the filter box, the filter stays
            await pilot.pause()
            assert not view.query_one("#filter").display and view.filter == "bo"
            await pilot.press("escape")  # 2: clears the filter, back to "not OK"
            feed(app)
            await pilot.pause()
            assert app.screen is view and table.keys == ("bob", "alice")  # bob now has failures
            await pilot.press("escape")  # 3: back to where we came from
            await pilot.pause()
            assert isinstance(app.screen, OverviewView)

    asyncio.run(scenario())

"""Progress that tells the truth (issue #15): cumulative counts across passes and retries, no false
100 %, a cancelled wave said so, an ETA from the surveyed volume and the measured rate, what runs now,
and "N of M" counted against the wave shown.

The state store is written with the StateStore API, as a runner writes it (no servers: the copy
itself is tested against Dovecot elsewhere); the cockpit is driven by Pilot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cockpit_lab import feed, open_mailbox
from dovecot_lab import Unreachable, write_plan
from textual.widgets import Static

from cockpit.app import CockpitApp
from cockpit.format import bar, count, percent, state_label, states_text, tone
from cockpit.screens.mailbox import FolderFailureView, MailboxView
from cockpit.screens.mailboxes import MailboxesView
from cockpit.screens.overview import estimate, wave_detail
from cockpit.widgets.fleet_table import FleetTable
from runners.model import FolderState
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state import rows
from runners.state.mailbox_views import LedgerProgress
from runners.state.read_models.snapshot import LedgerCache, WaveSummary, take
from runners.state.store import MailboxProgress, StateStore
from runners.state.survey import SurveyRow

MB = 1_000_000
OPEN_FAILED = "NO [SERVERBUG] Internal error occurred. Refer to server log for more information."


def plan_with(root: Path, mailboxes: tuple[tuple[str, str, str], ...]) -> Plan:
    return load_plan(write_plan(root, Unreachable(10143), Unreachable(20143), mailboxes=mailboxes))


def _copy(store: StateStore, folder_id: int, uids: range, run_id: int, status: str = "copied") -> None:
    refs = {uid: rows.MessageRef(folder_id, 1, str(uid)) for uid in uids}
    store.record_intents(
        rows.Intent(refs[uid], rows.SourceFacts(uid, MB, None, ""), b"\x00" * 32, "INBOX", None, run_id)
        for uid in uids
    )
    store.record_results(
        rows.Outcome(
            refs[uid],
            status,
            str(uid + 100) if status == "copied" else None,
            None if status == "copied" else "NO [LIMIT] too big",
        )
        for uid in uids
    )


def column(table: FleetTable, key: str, label: str) -> str:
    """The text of one cell, found by its column's label."""
    return table.cells(key)[[name for name, _ in table.columns].index(label)]


def first_pass_then_retry(plan: Plan) -> None:
    """alice: a full pass copies 6 of 7 (one too big), then a retry of the one that failed fails
    again; a retry's counters start at 0 (it only looks at the failed message)."""
    store = StateStore(plan.state_db)
    try:
        run = store.start_run("pilot", "full", 1)
        alice = store.upsert_mailbox("alice", "alice", "pilot")
        store.claim_mailbox(alice, run)
        inbox = store.folder(alice, "INBOX", "INBOX", "INBOX", None)
        _copy(store, inbox.id, range(1, 7), run)
        _copy(store, inbox.id, range(7, 8), run, status="failed")
        store.folder_done(inbox.id, FolderState(1, 8, 7), 7 * MB)
        store.mailbox_progress(alice, MailboxProgress(7, 7 * MB, 7, 6 * MB, 1, 0, None))
        store.release_mailbox(alice, "partial")
        store.finish_run(run, "partial", {})
        retry = store.start_run("pilot", "retry", 1)
        store.claim_mailbox(alice, retry)
        store.mailbox_progress(alice, MailboxProgress(0, 0, 0, 0, 0, 0, None))
        store.release_mailbox(alice, "partial")
        store.finish_run(retry, "partial", {})
    finally:
        store.close()


def test_counts_stay_cumulative_after_a_retry(tmp_path: Path) -> None:
    plan = plan_with(tmp_path, (("alice", "alice", "pilot"),))
    first_pass_then_retry(plan)

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.pause()
            waves = app.screen.query_one("#waves", FleetTable)
            # The retry's own counters say 0/0; six of seven are on the target.
            assert column(waves, "pilot", "messages") == "6/7"
            assert "85%" in column(waves, "pilot", "progress")
            await pilot.press("m")
            await pilot.pause()
            feed(app)
            await pilot.pause()
            assert isinstance(app.screen, MailboxesView)
            table = app.screen.query_one("#mailboxes", FleetTable)
            assert " 6/7 " in table.row_text("alice")
            assert "6 of 7 copied; 1 failed" in str(app.screen.query_one("#row-detail", Static).render())

    asyncio.run(scenario())


def test_a_wave_with_work_left_is_never_100_percent_and_a_cancelled_one_says_so(tmp_path: Path) -> None:
    plan = plan_with(tmp_path, (("alice", "alice", "pilot"), ("bob", "bob", "later")))
    store = StateStore(plan.state_db)
    try:
        run = store.start_run("pilot", "full", 1)
        alice = store.upsert_mailbox("alice", "alice", "pilot")
        store.claim_mailbox(alice, run)
        inbox = store.folder(alice, "INBOX", "INBOX", "INBOX", None)
        _copy(store, inbox.id, range(1, 200), run)
        # 199 of 200 listed messages copied, still running: 99.5 % must not read "100%".
        store.mailbox_progress(alice, MailboxProgress(200, 200 * MB, 199, 199 * MB, 0, 0, "INBOX"))
        later = store.start_run("later", "full", 1)
        bob = store.upsert_mailbox("bob", "bob", "later")
        store.claim_mailbox(bob, later)
        store.mailbox_progress(bob, MailboxProgress(10, 10 * MB, 10, 10 * MB, 0, 0, None))
        store.release_mailbox(bob, "cancelled")
        store.finish_run(later, "partial", {})
    finally:
        store.close()

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.pause()
            waves = app.screen.query_one("#waves", FleetTable)
            assert "99%" in column(waves, "pilot", "progress")
            later = column(waves, "later", "progress")
            assert "cancelled" in later and "100%" not in later
            now = str(app.screen.query_one("#running-now", Static).render())
            assert now == "running now: pilot (1 of 1 mailboxes): alice in INBOX"

    asyncio.run(scenario())


def test_eta_counts_the_surveyed_volume_at_the_measured_rate(tmp_path: Path) -> None:
    plan = plan_with(tmp_path, (("alice", "alice", "pilot"), ("bob", "bob", "pilot")))
    store = StateStore(plan.state_db)
    try:
        # The survey: alice 100 MB, bob 300 MB; bob not started yet, so only the survey knows his size.
        store.save_survey([SurveyRow("alice", "INBOX", 100, 100 * MB, MB, 0.0),
                           SurveyRow("bob", "INBOX", 300, 300 * MB, MB, 0.0)])  # fmt: skip
        run = store.start_run("pilot", "full", 1)
        alice = store.upsert_mailbox("alice", "alice", "pilot")
        store.claim_mailbox(alice, run)
        store.mailbox_progress(alice, MailboxProgress(0, 0, 0, 0, 0, 0, "INBOX"))  # listed nothing yet
    finally:
        store.close()

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(160, 48)) as pilot:
            feed(app)
            await pilot.pause()
            throughput = app.screen.query_one("#throughput", Static)
            assert "ETA - (measuring the rate)" in str(throughput.render())
            app.mb_rates.extend([4.0] * 30)  # measured between snapshots (the next feed adds one more)
            app.rates.extend([40.0] * 30)
            feed(app)
            await pilot.pause()
            # 400 MB left (the survey's: nothing listed or copied yet) at about 4 MB/s.
            assert "ETA 0:01:4" in str(throughput.render()) and "(400 MB left)" in str(throughput.render())

    asyncio.run(scenario())


def test_estimate_is_the_volume_left_at_the_mean_rate(tmp_path: Path) -> None:
    plan = plan_with(tmp_path, (("alice", "alice", "pilot"),))
    store = StateStore(plan.state_db)
    try:
        store.save_survey([SurveyRow("alice", "INBOX", 100, 100 * MB, MB, 0.0)])
        run = store.start_run("pilot", "full", 1)
        alice = store.upsert_mailbox("alice", "alice", "pilot")
        store.claim_mailbox(alice, run)
        store.mailbox_progress(alice, MailboxProgress(100, 100 * MB, 50, 50 * MB, 0, 0, "INBOX"))
        snapshot = take(store, plan)
    finally:
        store.close()
    assert estimate(snapshot, [10.0, 30.0], [1.0, 3.0]) == (25.0, " (50 MB left)")  # 50 MB at 2 MB/s
    assert estimate(snapshot, [], []) == (None, " (measuring the rate)")
    assert estimate(snapshot, [5.0], [0.0]) == (10.0, " (50 messages left)")  # no bytes moved: by messages


def test_mailboxes_of_a_wave_count_against_the_wave(tmp_path: Path) -> None:
    fleet = tuple((f"u{i:02d}", f"u{i:02d}", "pilot" if i < 4 else "later") for i in range(50))
    plan = plan_with(tmp_path, fleet)

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            feed(app)
            await pilot.pause()
            app.open_mailboxes(wave="pilot")
            await pilot.pause()
            feed(app)
            await pilot.pause()
            label = app.screen.query_one("#filter-label", Static)
            # Nothing of the wave needs attention yet: none of its own 4, not "0 of 50".
            assert str(label.render()) == "mailboxes of wave pilot, filter needs attention (not OK): 0 of 4"
            await pilot.press("slash", "enter")  # every mailbox of the wave
            feed(app)
            await pilot.pause()
            assert str(label.render()) == "mailboxes of wave pilot, filter all: 4 of 4"

    asyncio.run(scenario())


def test_a_folder_that_could_not_be_opened_shows_in_the_header_and_opens_on_enter(tmp_path: Path) -> None:
    plan = plan_with(tmp_path, (("alice", "alice", "pilot"),))
    store = StateStore(plan.state_db)
    try:
        run = store.start_run("pilot", "full", 1)
        alice = store.upsert_mailbox("alice", "alice", "pilot")
        store.claim_mailbox(alice, run)
        inbox = store.folder(alice, "INBOX", "INBOX", "INBOX", None)
        _copy(store, inbox.id, range(1, 3), run)
        store.folder_done(inbox.id, FolderState(1, 3, 2), 2 * MB)
        locked = store.folder(alice, "Locked", "Locked", "Locked", None)
        store.folder_error(locked.id, OPEN_FAILED)
        store.mailbox_progress(alice, MailboxProgress(2, 2 * MB, 2, 2 * MB, 0, 0, None))
        store.release_mailbox(alice, "partial")
        store.finish_run(run, "partial", {})
    finally:
        store.close()

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_mailbox(app, pilot, "alice")
            view = app.screen
            assert isinstance(view, MailboxView)
            assert "1 folder could not be opened" in str(view.query_one("#summary", Static).render())
            folders = view.query_one("#folders", FleetTable)
            folders.focus()
            folders.move_cursor(folders.keys.index("Locked"))
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, FolderFailureView)
            assert OPEN_FAILED in str(app.screen.query_one("#failure", Static).render())

    asyncio.run(scenario())


@pytest.mark.parametrize("per_poll", [1, None])
def test_the_ledger_cache_rereads_only_what_changed(tmp_path: Path, per_poll: int | None) -> None:
    plan = plan_with(tmp_path, (("alice", "alice", "pilot"), ("bob", "bob", "pilot")))
    first_pass_then_retry(plan)
    store = StateStore(plan.state_db)
    try:
        bob = store.upsert_mailbox("bob", "bob", "pilot")
        store.set_mailbox_state(bob, "pending")  # stamped after alice
        cache = LedgerCache(per_poll=per_poll)
        cache.refresh(store)
        if per_poll == 1:  # one a poll, oldest change first: bob waits for the next one
            assert list(cache.ledgers) == ["alice"]
            cache.refresh(store)
        counts = cache.ledgers
        assert (
            counts["alice"].copied == 6
            and counts["alice"].failed == 1
            and counts["alice"].source_messages == 7
        )
        assert counts["bob"].copied == 0
        # The wave's totals: the counters (0/0 after the retry) plus the ledger's difference.
        assert cache.wave_delta("pilot")[:2] == [6, 7]
        read: list[list[str]] = []
        original = store.ledger_progress

        def counting(sources: list[str]) -> dict[str, LedgerProgress]:
            read.append(list(sources))
            return original(sources)

        store.ledger_progress = counting  # type: ignore[method-assign]
        cache.refresh(store)
        assert read == []  # nothing changed: nothing re-read
        store.set_mailbox_state(bob, "running")  # bob's `updated` moves
        cache.refresh(store)
        assert read == [["bob"]]
    finally:
        store.close()


def test_formatters_never_round_up_to_done() -> None:
    assert percent(0.999) == " 99%" and percent(1.0) == "100%" and bar(0.99, 6) == "█████░"
    assert count(9_840) == "9,840" and count(123_456) == "123k" and count(1_234_567) == "1.2M"
    assert states_text({"ok": 2, "failed": 1, "running": 1}) == "1 running, 1 failed, 2 ok"
    assert (
        state_label("failed") == "✗ failed"
        and tone("ok", failed=1) == "error"
        and tone("paused") == "warning"
    )


def test_a_running_delta_pass_is_not_counted_twice(tmp_path: Path) -> None:
    """A second pass walks the ten messages the first one copied (counted as done): the wave reads
    10 of 10 throughout, never the ledger's 10 plus the counters' 10."""
    plan = plan_with(tmp_path, (("alice", "alice", "pilot"),))
    store = StateStore(plan.state_db)
    try:
        run = store.start_run("pilot", "full", 1)
        alice = store.upsert_mailbox("alice", "alice", "pilot")
        store.claim_mailbox(alice, run)
        inbox = store.folder(alice, "INBOX", "INBOX", "INBOX", None)
        _copy(store, inbox.id, range(1, 11), run)
        store.folder_done(inbox.id, FolderState(1, 11, 10), 10 * MB)
        store.mailbox_progress(alice, MailboxProgress(10, 10 * MB, 10, 10 * MB, 0, 0, None))
        store.release_mailbox(alice, "ok")
        store.finish_run(run, "ok", {})
        cache = LedgerCache(per_poll=10)
        second = store.start_run("pilot", "delta", 1)
        store.claim_mailbox(alice, second)
        store.mailbox_progress(alice, MailboxProgress(10, 10 * MB, 0, 0, 0, 0, "INBOX"))
        (wave,) = take(store, plan, ledger=cache).waves
        assert (wave.messages_done, wave.messages_total) == (0, 10)  # the run's own count while it runs
        assert take(store, plan, ledger=cache).mailbox("alice").done_of_total == (10, 10)  # type: ignore[union-attr]
        store.mailbox_progress(alice, MailboxProgress(10, 10 * MB, 10, 10 * MB, 0, 0, "INBOX"))
        (wave,) = take(store, plan, ledger=cache).waves
        assert (wave.messages_done, wave.messages_total) == (
            10,
            10,
        ) and wave.fraction == 0.99  # still running
    finally:
        store.close()


def test_the_wave_line_names_its_readiness_blockers_and_says_when_no_run_happened_yet() -> None:
    wave = WaveSummary("wave-2", 4, {"pending": 4}, 0, 0, 0, 0, 0, False, None)
    line = wave_detail(wave, {"erin@legacy.example": ("SRC-LOGIN-002", "TGT-SIZE-006")})
    assert line.endswith(
        "no run yet; BLOCKED by readiness: erin@legacy.example (SRC-LOGIN-002, TGT-SIZE-006)"
    )
    assert "last run not run" not in wave_detail(wave)

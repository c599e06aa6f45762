"""The waves' totals in the cockpit's snapshots: a large fleet's sum is held over a few polls (it is a
pass over every mailbox row), a small fleet's is made every poll, and rates are taken between sums."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from dovecot_lab import Unreachable, write_plan

from cockpit.app import CockpitApp
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state.mailbox_reads import WaveStateTotals
from runners.state.read_models import snapshot
from runners.state.read_models.snapshot import LedgerCache, take
from runners.state.store import MailboxProgress, StateStore


def plan_of_two(root: Path) -> Plan:
    mailboxes = (("alice", "alice", "pilot"), ("bob", "bob", "pilot"))
    return load_plan(write_plan(root, Unreachable(10143), Unreachable(20143), mailboxes=mailboxes))


def running(store: StateStore, source: str, done: int) -> None:
    """``source`` copying in a run of its own, ``done`` messages so far (its counters: the sum's part)."""
    mailbox = store.upsert_mailbox(source, source, "pilot")
    store.claim_mailbox(mailbox, store.start_run("pilot", "full", 1))
    store.mailbox_progress(mailbox, MailboxProgress(100, 100_000, done, done * 1_000, 0, 0, "INBOX"))


def pilot_done(shot: snapshot.Snapshot) -> int:
    (wave,) = [w for w in shot.waves if w.name == "pilot"]
    return wave.messages_done


def test_a_small_fleets_totals_are_summed_at_every_poll(tmp_path: Path) -> None:
    plan = plan_of_two(tmp_path)
    store = StateStore(plan.state_db)
    cache = LedgerCache()
    running(store, "alice", 10)
    first = take(store, plan, ledger=cache)
    running(store, "bob", 5)
    second = take(store, plan, ledger=cache)
    assert (pilot_done(first), pilot_done(second)) == (10, 15)
    assert second.totals_taken > first.totals_taken
    assert second.messages_done == 15


def test_a_costly_sum_is_held_until_it_is_due_then_summed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_of_two(tmp_path)
    store = StateStore(plan.state_db)
    summed = store.wave_state_totals

    def slow_sum() -> list[WaveStateTotals]:  # what a fleet of ~40,000 mailboxes costs here
        time.sleep(snapshot.TOTALS_CHEAP * 1.5)
        return summed()

    monkeypatch.setattr(store, "wave_state_totals", slow_sum)
    cache = LedgerCache()
    running(store, "alice", 10)
    first = take(store, plan, ledger=cache)
    running(store, "bob", 5)
    held = take(store, plan, ledger=cache)
    # The counters moved, but the sum of 30 ms is not due for 10 x 30 ms: the same totals, the same stamp.
    assert (pilot_done(held), held.messages_done, held.totals_taken) == (10, 10, first.totals_taken)
    # The rows are read fresh all the same: bob had no row in the store at the first poll, and is not
    # shown a second time as a planned mailbox the store has not seen.
    assert [(m.source, m.state) for m in held.mailboxes] == [("alice", "running"), ("bob", "running")]
    time.sleep(snapshot.TOTALS_SPACING * snapshot.TOTALS_CHEAP * 1.5 + 0.05)
    due = take(store, plan, ledger=cache)
    assert (pilot_done(due), due.messages_done) == (15, 15)
    assert due.totals_taken > first.totals_taken


def test_a_held_sum_is_summed_again_after_its_maximum_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_of_two(tmp_path)
    store = StateStore(plan.state_db)
    summed = store.wave_state_totals

    def slow_sum() -> list[WaveStateTotals]:
        time.sleep(snapshot.TOTALS_CHEAP * 1.5)
        return summed()

    monkeypatch.setattr(store, "wave_state_totals", slow_sum)
    monkeypatch.setattr(snapshot, "TOTALS_MAX_AGE", 0.1)  # under 10 x the sum's cost
    cache = LedgerCache()
    running(store, "alice", 10)
    take(store, plan, ledger=cache)
    running(store, "bob", 5)
    time.sleep(0.15)
    assert pilot_done(take(store, plan, ledger=cache)) == 15


def test_rates_are_taken_between_two_sums_of_the_counters(tmp_path: Path) -> None:
    plan = plan_of_two(tmp_path)
    store = StateStore(plan.state_db)
    running(store, "alice", 10)
    first = take(store, plan, ledger=LedgerCache())
    app = CockpitApp(plan, poll=False)
    app.apply(first)
    # A poll whose totals were held: no rate from it (before, it read as 0 messages a second).
    app.apply(replace(first, taken=first.taken + 0.5))
    assert list(app.rates) == []
    assert app.snapshot_interval == pytest.approx(0.5)
    # The next sum, 2 s after the first: 200 more messages over those 2 s, not over the last poll's 0.5 s.
    app.apply(
        replace(first, taken=first.taken + 1.0, totals_taken=first.totals_taken + 2.0, messages_done=210)
    )
    assert list(app.rates) == [pytest.approx(100.0)]

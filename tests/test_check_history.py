"""Readiness across check runs in the state store: the latest result of every check, whoever ran it
and whatever the scope of the run (a partial re-run replaces only what it re-checked)."""

from __future__ import annotations

from pathlib import Path

from checks.history import record
from checks.model import Finding, Outcome, Severity, State
from checks.runner import CheckRun
from runners.state.store import StateStore


def _blocker(check: str, obj: str) -> Finding:
    return Finding(check, Severity.BLOCKER, "mailbox", obj, f"{check} fails for {obj}", observed="NO")


def _run(store: StateStore, outcomes: list[Outcome], scope: str, who: str, at: float) -> int:
    run_id, _ = record(store, CheckRun("pre", outcomes, started=at, seconds=1.0), scope, who)
    return run_id


def test_latest_result_of_every_check_across_runs(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    first = _run(
        store,
        [
            Outcome("SRC-LOGIN-002", "Login", "source", State.OK, [_blocker("SRC-LOGIN-002", "carol")]),
            Outcome("TGT-SIZE-006", "Size", "capacity", State.OK, [_blocker("TGT-SIZE-006", "alice")]),
            Outcome("DNS-SPF-005", "SPF", "dns", State.OK, [_blocker("DNS-SPF-005", "example.net")]),
        ],
        "all",
        "sam@jump-1",
        1000.0,
    )
    # Re-run one check: carol logs in now. The other categories keep their blockers.
    second = _run(
        store,
        [Outcome("SRC-LOGIN-002", "Login", "source", State.OK, [])],
        ":SRC-LOGIN-002",
        "nina@ops-2",
        2000.0,
    )
    assert {(f.check_id, f.object_id) for f in store.latest_findings()} == {
        ("TGT-SIZE-006", "alice"),
        ("DNS-SPF-005", "example.net"),
    }
    assert store.latest_finding_counts() == {"capacity": {"blocker": 1}, "dns": {"blocker": 1}}
    checked = {c.category: (c.run_id, c.operator, c.started) for c in store.categories_checked()}
    assert checked == {
        "source": (second, "nina@ops-2", 2000.0),
        "capacity": (first, "sam@jump-1", 1000.0),
        "dns": (first, "sam@jump-1", 1000.0),
    }
    # A check that ends in error says nothing new: its earlier blocker stays, and it is listed.
    _run(
        store,
        [Outcome("TGT-SIZE-006", "Size", "capacity", State.ERROR, reason="BAD")],
        "capacity:",
        "sam@jump-1",
        3000.0,
    )
    assert ("TGT-SIZE-006", "alice") in {(f.check_id, f.object_id) for f in store.latest_findings()}
    assert [(c.check_id, c.state) for c in store.latest_checks_not_ok()] == [("TGT-SIZE-006", "error")]
    # A check that no longer applies (skipped) has no findings any more.
    _run(
        store,
        [Outcome("DNS-SPF-005", "SPF", "dns", State.SKIPPED, reason="no domains")],
        "dns:",
        "sam@jump-1",
        4000.0,
    )
    assert {(f.check_id, f.object_id) for f in store.latest_findings()} == {("TGT-SIZE-006", "alice")}
    rows, matching = store.latest_findings_page("alice")
    assert matching == 1 and [f.object_id for f in rows] == ["alice"]
    assert store.latest_blockers() == [("mailbox", "alice", "TGT-SIZE-006")]

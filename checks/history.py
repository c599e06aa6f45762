"""Check runs in the state store, and what changed since the last comparable run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from checks.model import Finding, Severity, State
from checks.runner import CheckRun
from runners.state.store import StateStore


@dataclass(slots=True)
class Changes:
    """Fingerprints compared with the previous run over the same checks."""

    new: set[str] = field(default_factory=set)
    resolved: list[dict[str, str]] = field(default_factory=list)
    regressed: set[str] = field(default_factory=set)
    persisting: set[str] = field(default_factory=set)
    previous_run: int | None = None


def record(store: StateStore, run: CheckRun, scope: str) -> tuple[int, Changes]:
    """Store the run and compare it with the last run of the same scope and phase."""
    previous = store.query(
        "SELECT id FROM check_runs WHERE scope = ? AND phase = ? ORDER BY id DESC LIMIT 1", (scope, run.phase)
    )
    with store.transaction() as db:
        cur = db.execute(
            "INSERT INTO check_runs (started, seconds, phase, scope, complete) VALUES (?,?,?,?,?)",
            (run.started or time.time(), run.seconds, run.phase, scope, int(not run.incomplete)),
        )
        run_id = int(cur.lastrowid or 0)
        db.executemany(
            "INSERT INTO check_results (run_id, check_id, category, state, reason, seconds) VALUES (?,?,?,?,?,?)",
            [(run_id, o.check_id, o.category, o.state.value, o.reason, o.seconds) for o in run.outcomes],
        )
        db.executemany(
            "INSERT OR REPLACE INTO findings (run_id, fingerprint, check_id, severity, object_type, object_id, title, "
            "observed, expected, evidence, remediation, waiver) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    run_id,
                    f.fingerprint,
                    f.check_id,
                    f.severity.value,
                    f.object_type,
                    f.object_id,
                    f.title,
                    f.observed,
                    f.expected,
                    f.evidence,
                    f.remediation,
                    f.waiver,
                )
                for f in run.findings
            ],
        )
    changes = Changes()
    if previous:
        changes = _compare(store, int(previous[0]["id"]), run)
    return run_id, changes


def _compare(store: StateStore, previous_id: int, run: CheckRun) -> Changes:
    before = {
        r["fingerprint"]: r
        for r in store.query(
            "SELECT fingerprint, check_id, severity, object_id, title FROM findings WHERE run_id = ? "
            "AND severity != 'pass'",
            (previous_id,),
        )
    }
    # A check that errored this time says nothing about its old findings: they are not "resolved".
    unknown = {o.check_id for o in run.outcomes if o.state != State.OK}
    now: dict[str, Finding] = {f.fingerprint: f for f in run.findings if f.severity != Severity.PASS}
    changes = Changes(previous_run=previous_id)
    for fp, finding in now.items():
        old = before.get(fp)
        if old is None:
            changes.new.add(fp)
        elif Severity(old["severity"]).rank < finding.severity.rank:
            changes.regressed.add(fp)
        else:
            changes.persisting.add(fp)
    for fp, old in before.items():
        if fp not in now and old["check_id"] not in unknown:
            changes.resolved.append(
                {
                    "check_id": old["check_id"],
                    "object_id": old["object_id"],
                    "title": old["title"],
                    "severity": old["severity"],
                }
            )
    return changes

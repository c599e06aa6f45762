"""Check runs in the state store, and what changed since the last comparable run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from checks.model import Finding, Severity, State
from checks.runner import CheckRun
from runners.state.check_rows import CheckResultRecord, CheckRunRecord, FindingRecord
from runners.state.statuses import CheckState
from runners.state.store import StateStore


@dataclass(slots=True)
class Changes:
    """Fingerprints compared with the previous run over the same checks."""

    new: set[str] = field(default_factory=set)
    resolved: list[dict[str, str]] = field(default_factory=list)
    regressed: set[str] = field(default_factory=set)
    persisting: set[str] = field(default_factory=set)
    previous_run: int | None = None


def record(store: StateStore, run: CheckRun, scope: str, operator: str | None = None) -> tuple[int, Changes]:
    """Store the run (and who ran it, ``user@host``) and compare it with the last run of the same scope
    and phase."""
    previous = store.last_check_run(scope=scope, phase=run.phase)
    run_id = store.record_check_run(
        CheckRunRecord(
            run.started or time.time(), run.seconds, run.phase, scope, not run.incomplete, operator
        ),
        [
            CheckResultRecord(o.check_id, o.category, CheckState(o.state.value), o.reason, o.seconds)
            for o in run.outcomes
        ],
        [
            FindingRecord(
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
    if previous is not None:
        changes = _compare(store, previous.id, run)
    return run_id, changes


def _compare(store: StateStore, previous_id: int, run: CheckRun) -> Changes:
    before = {
        f.fingerprint: f for f in store.findings_of_run(previous_id) if f.severity != Severity.PASS.value
    }
    # A check that errored this time says nothing about its old findings: they are not "resolved".
    unknown = {o.check_id for o in run.outcomes if o.state != State.OK}
    now: dict[str, Finding] = {f.fingerprint: f for f in run.findings if f.severity != Severity.PASS}
    changes = Changes(previous_run=previous_id)
    for fp, finding in now.items():
        old = before.get(fp)
        if old is None:
            changes.new.add(fp)
        elif Severity(old.severity).rank < finding.severity.rank:
            changes.regressed.add(fp)
        else:
            changes.persisting.add(fp)
    for fp, old in before.items():
        if fp not in now and old.check_id not in unknown:
            changes.resolved.append(
                {
                    "check_id": old.check_id,
                    "object_id": old.object_id,
                    "title": old.title,
                    "severity": old.severity,
                }
            )
    return changes

"""Readiness check runs in the state store: each run, each check's outcome and every finding, kept
as history so that a run can be compared with the one before and the cockpit can show the last."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runners.state.base import StoreBase
from runners.state.statuses import CheckState


@dataclass(frozen=True, slots=True)
class CheckRunRecord:
    started: float
    seconds: float | None
    phase: str
    scope: str  # "all", or the category / ids that were run
    complete: bool  # no check ended in error


@dataclass(frozen=True, slots=True)
class CheckRunRow:
    id: int
    started: float
    phase: str


@dataclass(frozen=True, slots=True)
class CheckResultRecord:
    check_id: str
    category: str
    state: CheckState
    reason: str | None
    seconds: float | None


@dataclass(frozen=True, slots=True)
class CheckRow:
    """A check that did not end ok in the last run, and why."""

    check_id: str
    category: str
    state: CheckState
    reason: str


@dataclass(frozen=True, slots=True)
class FindingRecord:
    fingerprint: str
    check_id: str
    severity: str  # blocker | warning | info | pass (checks.model.Severity)
    object_type: str
    object_id: str
    title: str
    observed: str
    expected: str
    evidence: str
    remediation: str
    waiver: str | None


@dataclass(frozen=True, slots=True)
class FindingRow:
    """A stored finding, with the category of the check that made it."""

    check_id: str
    category: str
    severity: str
    object_type: str
    object_id: str
    title: str
    observed: str
    expected: str
    evidence: str
    remediation: str
    waiver: str | None
    fingerprint: str


_WORST_FIRST = "CASE f.severity WHEN 'blocker' THEN 0 WHEN 'warning' THEN 1 WHEN 'info' THEN 2 ELSE 3 END"


class CheckHistoryMixin(StoreBase):
    def record_check_run(
        self, run: CheckRunRecord, results: Sequence[CheckResultRecord], findings: Sequence[FindingRecord]
    ) -> int:
        """Store one run with its outcomes and findings, in one transaction; returns its id."""
        with self.transaction() as db:
            run_id = self._backend.insert(
                db,
                "INSERT INTO check_runs (started, seconds, phase, scope, complete) VALUES (?,?,?,?,?)",
                (run.started, run.seconds, run.phase, run.scope, int(run.complete)),
            )
            db.executemany(
                "INSERT INTO check_results (run_id, check_id, category, state, reason, seconds) VALUES (?,?,?,?,?,?)",
                [(run_id, r.check_id, r.category, CheckState(r.state), r.reason, r.seconds) for r in results],
            )
            db.executemany(
                "INSERT INTO findings (run_id, fingerprint, check_id, severity, object_type, object_id, title, "
                "observed, expected, evidence, remediation, waiver) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (run_id, fingerprint) DO UPDATE SET check_id = excluded.check_id, "
                "severity = excluded.severity, object_type = excluded.object_type, object_id = excluded.object_id, "
                "title = excluded.title, observed = excluded.observed, expected = excluded.expected, "
                "evidence = excluded.evidence, remediation = excluded.remediation, waiver = excluded.waiver",
                [
                    (run_id, f.fingerprint, f.check_id, f.severity, f.object_type, f.object_id, f.title,
                     f.observed, f.expected, f.evidence, f.remediation, f.waiver)
                    for f in findings
                ],
            )  # fmt: skip
        return run_id

    def last_check_run(self, *, scope: str | None = None, phase: str | None = None) -> CheckRunRow | None:
        """The newest check run (of this scope and phase, when given)."""
        where, params = [], []
        for column, value in (("scope", scope), ("phase", phase)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT id, started, phase FROM check_runs{clause} ORDER BY id DESC LIMIT 1", params
        )
        return CheckRunRow(int(rows[0][0]), float(rows[0][1]), rows[0][2]) if rows else None

    def findings_of_run(self, run_id: int) -> list[FindingRow]:
        """Every finding of a run, worst first."""
        rows = self._read(
            "SELECT f.check_id, r.category, f.severity, f.object_type, f.object_id, f.title, f.observed, "
            "f.expected, f.evidence, f.remediation, f.waiver, f.fingerprint FROM findings f JOIN check_results r "
            f"ON r.run_id = f.run_id AND r.check_id = f.check_id WHERE f.run_id = ? ORDER BY {_WORST_FIRST}, "
            "f.check_id, f.object_id",
            (run_id,),
        )
        return [
            FindingRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6] or "",
                r[7] or "",
                r[8] or "",
                r[9] or "",
                r[10],
                r[11],
            )
            for r in rows
        ]

    def unwaived_finding_counts(self, run_id: int) -> dict[str, dict[str, int]]:
        """category → severity → how many findings of the run are not waived."""
        counts: dict[str, dict[str, int]] = {}
        for category, severity, n in self._read(
            "SELECT r.category, f.severity, COUNT(*) FROM findings f JOIN check_results r "
            "ON r.run_id = f.run_id AND r.check_id = f.check_id WHERE f.run_id = ? AND f.waiver IS NULL "
            "GROUP BY r.category, f.severity",
            (run_id,),
        ):
            counts.setdefault(category, {})[severity] = int(n)
        return counts

    def checks_not_ok(self, run_id: int) -> list[CheckRow]:
        """The checks of a run that ended in error or were skipped, by id."""
        rows = self._read(
            "SELECT check_id, category, state, reason FROM check_results WHERE run_id = ? AND state != ? "
            "ORDER BY check_id",
            (run_id, CheckState.OK),
        )
        return [CheckRow(r[0], r[1], CheckState(r[2]), r[3] or "") for r in rows]

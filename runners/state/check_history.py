"""Readiness check runs in the state store: each run, each check's outcome and every finding, kept
as history so that a run can be compared with the one before and the cockpit can show the last.
Its rows are built in ``check_rows``, imported where they are made: a run, which never reads them,
doesn't build them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from runners.state.base import StoreBase
from runners.state.statuses import CheckState

if TYPE_CHECKING:
    from runners.state.check_rows import (
        CategoryChecked,
        CheckResultRecord,
        CheckRow,
        CheckRunRecord,
        CheckRunRow,
        FindingRecord,
        FindingRow,
    )


#: The newest run of each check: a partial run replaces only what it re-checked.
_LATEST = "SELECT check_id, MAX(run_id) AS run_id FROM check_results GROUP BY check_id"
#: The newest run in which each check did not fail: a check that ended in error since says nothing
#: new about its findings, so the ones it made last time stay (never a false all-clear). A skipped
#: check (it does not apply any more) has none.
_LATEST_OK = (
    "SELECT check_id, MAX(run_id) AS run_id FROM check_results WHERE state != 'error' GROUP BY check_id"
)

#: Only ASCII letters folded, as SQLite's LIKE and LOWER fold them.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_WORST_FIRST = "CASE f.severity WHEN 'blocker' THEN 0 WHEN 'warning' THEN 1 WHEN 'info' THEN 2 ELSE 3 END"


class CheckHistoryMixin(StoreBase):
    def record_check_run(
        self, run: CheckRunRecord, results: Sequence[CheckResultRecord], findings: Sequence[FindingRecord]
    ) -> int:
        """Store one run with its outcomes and findings, in one transaction; returns its id."""
        with self.transaction() as db:
            run_id = self._backend.insert(
                db,
                "INSERT INTO check_runs (started, seconds, phase, scope, complete, operator) VALUES (?,?,?,?,?,?)",
                (run.started, run.seconds, run.phase, run.scope, int(run.complete), run.operator),
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
        from runners.state.check_rows import CheckRunRow

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
        return self._findings("WHERE f.run_id = ?", (run_id,))

    def latest_findings(self) -> list[FindingRow]:
        """Every check's findings from its newest run that did not end in error, worst first: the readiness picture
        across partial re-runs (re-running one check or category replaces only those)."""
        return self._findings(f"JOIN ({_LATEST_OK}) l ON l.run_id = f.run_id AND l.check_id = f.check_id", ())

    def latest_findings_page(
        self, text: str = "", sources: Sequence[str] = (), limit: int = 500
    ) -> tuple[list[FindingRow], int]:
        """The first ``limit`` of ``latest_findings`` (worst first) that match ``text`` (in the check,
        category, severity, object, title or observed value; or whose object is one of ``sources``),
        and how many match in all. The order is sorted on the index; only the page's rows are read."""
        base = (
            f"FROM findings f JOIN ({_LATEST_OK}) l ON l.run_id = f.run_id AND l.check_id = f.check_id "
            "JOIN check_results r ON r.run_id = f.run_id AND r.check_id = f.check_id"
        )
        where, params = "", []
        if text:
            like = (
                "%" + _ascii_lower(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            columns = ("f.check_id", "r.category", "f.severity", "f.object_id", "f.title", "f.observed")
            # LOWER on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's doesn't.
            tests = [f"LOWER({c}) LIKE ? ESCAPE '\\'" for c in columns]
            params = [like] * len(columns)
            if sources:
                listed, values = self._backend.in_values("f.object_id", sources)
                tests.append(listed)
                params.append(values)
            where = f" WHERE ({' OR '.join(tests)})"
        matching = int(self._read(f"SELECT COUNT(*) {base}{where}", params)[0][0])
        ids = [
            int(r[0])
            for r in self._read(
                f"SELECT f.rowid {base}{where} ORDER BY {_WORST_FIRST}, f.check_id, f.object_id LIMIT ?",
                [*params, limit],
            )
        ]
        if not ids:
            return [], matching
        listed, values = self._backend.in_values("f.rowid", ids)
        return self._findings(f"WHERE {listed}", (values,)), matching

    def _findings(self, clause: str, params: Sequence[object]) -> list[FindingRow]:
        from runners.state.check_rows import FindingRow

        rows = self._read(
            "SELECT f.check_id, r.category, f.severity, f.object_type, f.object_id, f.title, f.observed, "
            "f.expected, f.evidence, f.remediation, f.waiver, f.fingerprint FROM findings f JOIN check_results r "
            f"ON r.run_id = f.run_id AND r.check_id = f.check_id {clause} ORDER BY {_WORST_FIRST}, "
            "f.check_id, f.object_id",
            params,
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

    def checks_not_ok(self, run_id: int) -> list[CheckRow]:
        """The checks of a run that ended in error or were skipped, by id."""
        from runners.state.check_rows import CheckRow

        rows = self._read(
            "SELECT check_id, category, state, reason FROM check_results WHERE run_id = ? AND state != ? "
            "ORDER BY check_id",
            (run_id, CheckState.OK),
        )
        return [CheckRow(r[0], r[1], CheckState(r[2]), r[3] or "") for r in rows]

    def latest_finding_counts(self) -> dict[str, dict[str, int]]:
        """category → severity → how many unwaived findings each check's newest run that did not end
        in error made."""
        counts: dict[str, dict[str, int]] = {}
        for category, severity, n in self._read(
            f"SELECT r.category, f.severity, COUNT(*) FROM findings f JOIN ({_LATEST_OK}) l "
            "ON l.run_id = f.run_id AND l.check_id = f.check_id JOIN check_results r "
            "ON r.run_id = f.run_id AND r.check_id = f.check_id WHERE f.waiver IS NULL "
            "GROUP BY r.category, f.severity",
            (),
        ):
            counts.setdefault(category, {})[severity] = int(n)
        return counts

    def latest_checks_not_ok(self) -> list[CheckRow]:
        """The checks whose newest run ended in error or was skipped, by id."""
        from runners.state.check_rows import CheckRow

        rows = self._read(
            f"SELECT r.check_id, r.category, r.state, r.reason FROM check_results r JOIN ({_LATEST}) l "
            "ON l.run_id = r.run_id AND l.check_id = r.check_id WHERE r.state != ? ORDER BY r.check_id",
            (CheckState.OK,),
        )
        return [CheckRow(r[0], r[1], CheckState(r[2]), r[3] or "") for r in rows]

    def categories_checked(self) -> list[CategoryChecked]:
        """Each category with its newest run (when, and by whom), by name."""
        from runners.state.check_rows import CategoryChecked

        rows = self._read(
            "SELECT r.category, c.started, c.operator, c.id FROM check_runs c JOIN "
            "(SELECT category, MAX(run_id) AS run_id FROM check_results GROUP BY category) r "
            "ON r.run_id = c.id ORDER BY r.category",
            (),
        )
        return [CategoryChecked(r[0], float(r[1]), r[2], int(r[3])) for r in rows]

    def latest_blockers(self) -> list[tuple[str, str, str]]:
        """(object type, object, check) of every unwaived blocker among the checks' latest findings."""
        rows = self._read(
            f"SELECT f.object_type, f.object_id, f.check_id FROM findings f JOIN ({_LATEST_OK}) l "
            "ON l.run_id = f.run_id AND l.check_id = f.check_id WHERE f.severity = 'blocker' AND f.waiver IS NULL "
            "ORDER BY f.object_id, f.check_id",
            (),
        )
        return [(r[0], r[1], r[2]) for r in rows]


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)

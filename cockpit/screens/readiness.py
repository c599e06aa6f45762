"""Readiness: every finding of the last check run, worst first; Enter shows its evidence and fix.

``r`` re-runs every check, ``c`` the category of the finding under the cursor, ``.`` that one check:
in a worker thread, recorded in the state store like ``cutover check``, then shown. A read-only
cockpit refuses, saying why: it never writes.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from cockpit.screens.base import TextView, View, add_columns
from cockpit.widgets.keybar import KeyBar
from runners.state.check_history import FindingRow
from runners.state.read_models.snapshot import Snapshot, readiness_detail

COLUMNS = (("severity", 8), ("check", 15), ("category", 9), ("object", 28), ("finding", 60))


class ReadinessView(View):
    crumb = "readiness"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "rerun('all')", "Re-run all"),
        Binding("c", "rerun('category')", "Re-run category"),
        Binding("full_stop", "rerun('check')", "Re-run check"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.findings: tuple[FindingRow, ...] = ()
        self._run_id: int | None = None
        self.running = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="readiness-summary", markup=False)
        yield DataTable(id="findings", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#findings", DataTable)
        add_columns(table, COLUMNS)
        table.focus()

    def show(self, snapshot: Snapshot) -> None:
        readiness = snapshot.readiness
        if readiness is not None and readiness.run_id == self._run_id:
            return  # nothing new since the last refresh: don't reread the findings
        self._run_id = readiness.run_id if readiness else None
        self.reload()

    def reload(self) -> None:
        findings, not_ok = readiness_detail(self.cockpit.store)
        # Passes are the audit trail; the table shows what needs a decision first.
        self.findings = tuple(f for f in findings if f.severity != "pass") + tuple(
            f for f in findings if f.severity == "pass"
        )
        table = self.query_one("#findings", DataTable)
        with self.app.batch_update():
            table.clear()
            for index, f in enumerate(self.findings):
                severity = f.severity + ("*" if f.waiver else "")
                cells = (severity, f.check_id, f.category, f.object_id, f"{f.title}: {f.observed}")
                table.add_row(*(Text(c) for c in cells), key=str(index))
        counts = {
            s: sum(1 for f in findings if f.severity == s and not f.waiver)
            for s in ("blocker", "warning", "info", "pass")
        }
        problems = "; ".join(f"{c.check_id} {c.state}: {c.reason}" for c in not_ok if c.state == "error")
        busy = "  [running checks…]" if self.running else ""
        text = (
            (
                f"{counts['blocker']} blocker(s), {counts['warning']} warning(s), {counts['info']} info, "
                f"{counts['pass']} pass (* waived){busy}"
            )
            if findings
            else f"No readiness run yet.{busy}"
        )
        self.query_one("#readiness-summary", Static).update(
            text + (f"\ncould not run: {problems}" if problems else "")
        )

    def _selected(self) -> FindingRow | None:
        table = self.query_one("#findings", DataTable)
        if not self.findings or table.cursor_row < 0:
            return None
        return self.findings[min(table.cursor_row, len(self.findings) - 1)]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        finding = self.findings[int(str(event.row_key.value))]
        self.app.push_screen(FindingView(finding))

    def action_rerun(self, scope: str) -> None:
        if self.cockpit.read_only:  # a run's results are written to the state store
            self.notify(
                "read-only cockpit: checks can't be re-run from here (`cutover check` can)", severity="error"
            )
            return
        if self.running:
            self.notify("checks are already running")
            return
        selected = self._selected()
        category = selected.category if selected and scope == "category" else None
        only = [selected.check_id] if selected and scope == "check" else []
        self.running = True
        self.reload()
        self.notify(
            f"running {'all checks' if scope == 'all' else (category or only[0] if only else 'checks')}"
        )
        self._run_checks(category, only)

    @work(thread=True, exclusive=True, group="checks")
    def _run_checks(self, category: str | None, only: list[str]) -> None:
        from checks.runner import run_checks, select
        from cockpit.commands.check import record_run

        run = run_checks(self.cockpit.plan, select(category, only))
        record_run(self.cockpit.plan, run, category, only)  # its own connection: this is a worker thread
        self.app.call_from_thread(self._checks_done, len(run.blockers))

    def _checks_done(self, blockers: int) -> None:
        self.running = False
        self._run_id = None
        self.reload()
        self.notify(f"readiness run finished: {blockers} blocker(s)")


class FindingView(TextView):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("y", "copy", "Copy details")]
    text_id = "finding"

    def __init__(self, finding: FindingRow) -> None:
        super().__init__()
        self.finding = finding
        self.crumb = f"{finding.check_id} {finding.object_id}"

    def text(self) -> str:
        f = self.finding
        parts = [
            f"{f.severity.upper()}  {f.check_id} ({f.category})  {f.object_type} {f.object_id}",
            f.title,
            "",
        ]
        for label, value in (
            ("observed", f.observed),
            ("expected", f.expected),
            ("evidence", f.evidence),
            ("remediation", f.remediation),
            ("waiver", f.waiver or ""),
        ):
            if value:
                parts += [f"{label}:", *(f"  {line}" for line in value.splitlines()), ""]
        parts.append(
            f"fingerprint {f.fingerprint} (waive it in the plan's [[waivers]] with a reason and expiry)"
        )
        return "\n".join(parts)

"""Readiness: the latest finding of every check across runs, worst first; Enter shows its evidence and fix.

A partial re-run replaces only what it re-checked: ``r`` re-runs every check, ``c`` the category of the
finding under the cursor, ``.`` that one check, in a worker thread, recorded in the state store like
``cutover check`` (with who ran it), then shown. The summary says when each category was last checked
and by whom. ``/`` filters (text, or a wave's name: the findings about its mailboxes); Esc clears the
filter, then goes back. A read-only cockpit refuses re-runs in its flash line: it never writes.
"""

from __future__ import annotations

import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Header, Input, Static

from cockpit.screens.base import FilteredView, TextView
from cockpit.widgets.flash import flash
from cockpit.widgets.fleet_table import FleetTable
from cockpit.widgets.keybar import KeyBar
from runners.state.check_rows import CheckRow, FindingRow
from runners.state.operators import operator_id
from runners.state.read_models.snapshot import ReadinessSummary, Snapshot, readiness_page

COLUMNS = (
    ("severity", 8),
    ("check", 15),
    ("category", 9),
    ("wave", 10),
    ("object", 28),
    ("finding", 60),
)
#: Rows listed at most (worst first); the rest is counted and "/" narrows it. A large fleet has a finding
#: per mailbox and check: tens of thousands of rows would take seconds to read and lay out.
MAX_ROWS = 500
SEVERITIES = ("blocker", "warning", "info", "pass")


class ReadinessView(FilteredView):
    crumb = "readiness"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter"),
        Binding("r", "rerun('all')", "Re-run all"),
        Binding("c", "rerun('category')", "Re-run category"),
        Binding("full_stop", "rerun('check')", "Re-run check"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.findings: tuple[FindingRow, ...] = ()
        self.filter = ""
        self._run_id: int | None = None
        self._waves: dict[str, str] | None = None
        self._by_key: dict[str, FindingRow] = {}
        self.running = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: text or a wave's name; Enter applies, Esc clears", id="filter")
        yield Static("", id="readiness-summary", markup=False)
        yield FleetTable(COLUMNS, id="findings")  # the line API: only the visible lines are drawn
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#findings", FleetTable).focus()

    def show(self, snapshot: Snapshot) -> None:
        readiness = snapshot.readiness
        if readiness is not None and readiness.run_id == self._run_id:
            return  # nothing new since the last refresh: don't reread the findings
        self._run_id = readiness.run_id if readiness else None
        self.reload(readiness)

    def reload(self, readiness: ReadinessSummary | None = None) -> None:
        if readiness is None and self.cockpit.snapshot is not None:
            readiness = self.cockpit.snapshot.readiness
        plan = self.cockpit.plan
        findings, matching, not_ok = readiness_page(self.cockpit.store, plan, self.filter, MAX_ROWS)
        self.findings = findings
        if self._waves is None:  # mailbox → wave, for the wave column (other objects have none)
            self._waves = {m.source: m.wave for m in plan.mailboxes}
            # Findings name a mailbox by its address when the mailbox list gives one.
            self._waves |= {m.address.lower(): m.wave for m in plan.mailboxes if m.address}
        waves = self._waves
        # Keyed by the finding: after a re-run the cursor stays on the finding it was on, if still there.
        self._by_key = {f"{f.check_id} {f.fingerprint}": f for f in findings}
        rows = [
            (
                f"{f.check_id} {f.fingerprint}",
                (
                    f.severity + ("*" if f.waiver else ""),
                    f.check_id,
                    f.category,
                    waves.get(f.object_id, ""),
                    f.object_id,
                    f"{f.title}: {f.observed}",
                ),
            )
            for f in findings
        ]
        self.query_one("#findings", FleetTable).set_rows(rows)
        errors = tuple(c for c in not_ok if c.state == "error")
        self.query_one("#readiness-summary", Static).update(self._summary(readiness, matching, errors))

    def _summary(
        self, readiness: ReadinessSummary | None, matching: int, errors: tuple[CheckRow, ...]
    ) -> str:
        busy = "  [running checks…]" if self.running else ""
        if readiness is None:
            return f"No readiness run yet.{busy}"
        totals = dict.fromkeys(SEVERITIES, 0)
        for counts in readiness.by_category.values():
            for severity, n in counts.items():
                totals[severity] = totals.get(severity, 0) + n
        lines = [
            f"{totals['blocker']} blocker(s), {totals['warning']} warning(s), {totals['info']} info, "
            f"{totals['pass']} pass (* waived){busy}",
            "by category (the latest run of each check):",
        ]
        for checked in readiness.checked:
            counts = readiness.by_category.get(checked.category, {})
            failed = sum(1 for c in errors if c.category == checked.category)
            shown = ", ".join(
                [f"{counts[s]} {s}" for s in SEVERITIES[:2] if counts.get(s)]
                + ([f"{failed} check(s) could not run"] if failed else [])
            )
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(checked.started))
            lines.append(
                f"  {checked.category}: {shown or 'no problem'}; checked {when} by {checked.operator or 'unknown'}"
            )
        label = f"filter {self.filter!r}: {matching:,} finding(s)" if self.filter else ""
        if matching > len(self.findings):
            lines.append(
                f"{label or f'{matching:,} findings'}, the first {len(self.findings):,} shown (/ narrows)"
            )
        elif label:
            lines.append(f"{label} (Esc clears)")
        if errors:
            lines.append(
                "could not run (earlier findings kept): "
                + "; ".join(f"{c.check_id}: {c.reason}" for c in errors)
            )
        return "\n".join(lines)

    def _selected(self) -> FindingRow | None:
        key = self.query_one("#findings", FleetTable).cursor_key
        return self._by_key.get(key) if key is not None else None

    def on_fleet_table_row_selected(self, event: FleetTable.RowSelected) -> None:
        self.app.push_screen(FindingView(self._by_key[event.key]))

    # -- filter (k9s: "/" opens it, Esc clears it, then goes back) -----------------------------

    def filter_focus(self) -> Widget:
        return self.query_one("#findings", FleetTable)

    def filter_changed(self) -> None:
        self.reload()

    # -- re-runs -------------------------------------------------------------------------------

    def action_rerun(self, scope: str) -> None:
        if self.cockpit.read_only:  # never reached from a key (the app refuses first); a direct call
            flash(self, "read-only cockpit: checks can't be re-run from here (`cutover check` can)")
            return
        if self.running:
            flash(self, "checks are already running")
            return
        selected = self._selected()
        category = selected.category if selected and scope == "category" else None
        only = [selected.check_id] if selected and scope == "check" else []
        what = "all checks" if scope == "all" else (category or (only[0] if only else "all checks"))
        self.running = True
        self.reload()
        self.cockpit.store.record_operator_action(operator_id(), f"re-run of checks: {what}")
        self.cockpit.poke()
        self.notify(f"running {what}")
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
        self.cockpit.poke()
        self.reload()
        self.notify(f"readiness re-run finished: {blockers} blocker(s) in what was re-checked")


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

"""Overview: readiness per category, waves with progress, throughput and failures at a glance."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, Header, Sparkline, Static
from textual.widgets.data_table import CellDoesNotExist

from cockpit.format import bar, duration, eta_against_window, window_left
from cockpit.screens.base import View, add_columns
from cockpit.widgets.keybar import KeyBar
from runners.state.read_models.snapshot import Snapshot

SEVERITIES = ("blocker", "warning", "info", "pass")
COLUMNS = (
    ("wave", 12),
    ("mailboxes", 9),
    ("progress", 12),
    ("messages", 17),
    ("failed", 6),
    ("skipped", 7),
    ("states", 28),
    ("last run", 11),
)


class OverviewView(View):
    crumb = "overview"

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("", id="readiness", markup=False)
            yield DataTable(id="waves", cursor_type="row", zebra_stripes=True)
            yield Static("", id="throughput", markup=False)
            with Horizontal(id="graphs"):
                yield Sparkline([], id="rates")
                yield Sparkline([], id="mb-rates")
        yield KeyBar()

    def on_mount(self) -> None:
        add_columns(self.query_one("#waves", DataTable), COLUMNS)

    def show(self, snapshot: Snapshot) -> None:
        self.query_one("#readiness", Static).update(self._readiness_text(snapshot))
        table = self.query_one("#waves", DataTable)
        keys = {str(k.value) for k in table.rows}
        for wave in snapshot.waves:
            fraction = wave.messages_done / wave.messages_total if wave.messages_total else 0.0
            states = " ".join(f"{k}:{v}" for k, v in sorted(wave.states.items()))
            cells = (
                wave.name,
                str(wave.mailboxes),
                f"{bar(fraction, 6)} {fraction:4.0%}",
                f"{wave.messages_done:,}/{wave.messages_total:,}",
                str(wave.failed),
                str(wave.skipped),
                states,
                ("running" if wave.running else wave.last_run_status or "not run"),
            )
            if wave.name in keys:
                for column, value in zip(table.columns, cells, strict=True):
                    table.update_cell(wave.name, column, value)
            else:
                table.add_row(*cells, key=wave.name)
        # One sample draws as a full bar: wait for two, so no throughput never looks like the peak.
        rates, mb_rates = self.cockpit.rates, self.cockpit.mb_rates
        self.query_one("#rates", Sparkline).data = list(rates) if len(rates) > 1 else []
        self.query_one("#mb-rates", Sparkline).data = list(mb_rates) if len(mb_rates) > 1 else []
        msgs, mbs = self.cockpit.current_rate
        remaining = sum(w.messages_total - w.messages_done for w in snapshot.waves if w.running)
        eta = remaining / msgs if msgs > 0 and remaining else None
        failures = sum(w.failed for w in snapshot.waves)
        started = [w.running_since for w in snapshot.waves if w.running_since is not None]
        window = self.cockpit.plan.readiness.capacity.window_hours
        against, late = eta_against_window(eta, window_left(window, min(started, default=None)), window)
        throughput = self.query_one("#throughput", Static)
        throughput.set_class(late, "-late")
        throughput.update(
            f"throughput {msgs:,.0f} msg/s (left graph)  {mbs:,.1f} MB/s (right)   ETA {duration(eta)}   "
            f"failures {failures}" + (f"   {against}" if against else "")
        )

    @staticmethod
    def _readiness_text(snapshot: Snapshot) -> str:
        r = snapshot.readiness
        if r is None:
            return "Readiness: not checked yet (cutover check --plan …)"
        parts = []
        for category, counts in sorted(r.by_category.items()):
            shown = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts.get(s))
            parts.append(f"{category}: {shown}")
        errors = f"; {r.checks_error} check(s) could not run" if r.checks_error else ""
        return f"Readiness ({r.phase}): " + " | ".join(parts) + errors

    def selected_wave(self) -> str | None:
        """The wave under the cursor, if any."""
        try:
            table = self.query_one("#waves", DataTable)
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except (NoMatches, CellDoesNotExist):
            return None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.cockpit.open_mailboxes(wave=str(event.row_key.value))

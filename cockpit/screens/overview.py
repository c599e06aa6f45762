"""Overview: readiness per category, waves with progress, what is running now, throughput, the ETA
and failures at a glance.

Progress tells the truth: the counts are cumulative (what is copied of what the sources hold, from
the ledger), a wave with anything left to do never reads 100 %, a cancelled wave says so, and the
ETA is the volume left (the survey's, or what the passes counted) at the throughput measured over
the last seconds. The states column lists the wave's mailboxes by state in words; the line under the
table says everything about the wave under the cursor, wrapped.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Header, Sparkline, Static

from cockpit.format import (
    MB,
    bar,
    count,
    duration,
    eta_against_window,
    percent,
    state_label,
    states_text,
    volume,
    window_left,
)
from cockpit.screens.base import View
from cockpit.widgets.fleet_table import FleetTable
from cockpit.widgets.keybar import KeyBar
from runners.state.pacing import PacingRow
from runners.state.read_models.snapshot import Snapshot, WaveSummary

SEVERITIES = ("blocker", "warning", "info", "pass")
COLUMNS = (
    ("wave", 10),
    # The cutover window's stage in words ("final pass", "rolled back", "switching…"): whole at 80
    # columns, so the messages column moved right (the detail line says them too).
    ("window", 11),
    ("progress", 11),
    ("failed", 6),
    ("states", 28),  # readable at 80 columns; the detail line has them whole
    ("messages", 13),
    ("skipped", 7),
    ("last run", 11),
    ("mailboxes", 9),
)
#: Throughput samples averaged for the ETA (the poller's, twice a second: the last 10 seconds).
RATE_WINDOW = 20


class OverviewView(View):
    crumb = "overview"

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("", id="readiness", markup=False)
            # The line API (only changed lines drawn): a DataTable's cells were most of what drawing
            # this view cost the UI thread at 160x48 (cockpit_bench.py, the `o` key).
            yield FleetTable(COLUMNS, id="waves", on_cursor=self._cursor_moved, widens=False)
            yield Static("", id="wave-detail", markup=False)
            yield Static("", id="running-now", markup=False)
            yield Static("", id="throughput", markup=False)
            with Horizontal(id="graphs"):
                yield Sparkline([], id="rates")
                yield Sparkline([], id="mb-rates")
        yield KeyBar()

    def on_mount(self) -> None:
        #: Mailbox → wave, once (the plan doesn't change under a cockpit): the blockers are grouped by it.
        self._wave_of = {entry.source: entry.wave for entry in self.cockpit.plan.mailboxes}
        self._blockers: dict[str, dict[str, tuple[str, ...]]] = {}

    def show(self, snapshot: Snapshot) -> None:
        self.set_text("#readiness", self._readiness_text(snapshot))
        self._blockers = blockers_by_wave(snapshot, self._wave_of)
        rows: list[tuple[str, tuple[str, ...]]] = []
        tones: dict[str, str] = {}
        for wave in snapshot.waves:
            blocked = self._blockers.get(wave.name, {})
            # A wave with failures or blockers is drawn bold in the theme's error colour: it must
            # stand out without colour too.
            if wave.failed or wave.states.get("failed") or blocked:
                tones[wave.name] = "error"
            elif wave.window and wave.window.holder:  # an operator's step runs under its lease
                tones[wave.name] = "warning"
            states = (f"{len(blocked)} blocked; " if blocked else "") + states_text(wave.states)
            cells = (
                wave.name,
                wave.window.label if wave.window else "copying",
                progress_cell(wave),
                f"✗ {wave.failed}" if wave.failed else "0",
                states,
                f"{count(wave.messages_done)}/{count(wave.messages_total)}",
                str(wave.skipped),
                last_run(wave),
                str(wave.mailboxes),
            )
            rows.append((wave.name, cells))
        self.query_one("#waves", FleetTable).set_rows(rows, tones)
        # One sample draws as a full bar: wait for two, so no throughput never looks like the peak.
        rates, mb_rates = self.cockpit.rates, self.cockpit.mb_rates
        self.query_one("#rates", Sparkline).data = list(rates) if len(rates) > 1 else []
        self.query_one("#mb-rates", Sparkline).data = list(mb_rates) if len(mb_rates) > 1 else []
        self._wave_detail(snapshot)
        paced = pacing_now(snapshot.pacing)
        self.set_text("#running-now", running_now(snapshot) + (f"\n{paced}" if paced else ""))
        msgs, mbs = self.cockpit.current_rate
        eta, why = estimate(snapshot, list(rates)[-RATE_WINDOW:], list(mb_rates)[-RATE_WINDOW:])
        failures = sum(w.failed for w in snapshot.waves)
        started = [w.running_since for w in snapshot.waves if w.running_since is not None]
        window = self.cockpit.plan.readiness.capacity.window_hours
        against, late = eta_against_window(eta, window_left(window, min(started, default=None)), window)
        self.query_one("#throughput", Static).set_class(late, "-late")
        self.set_text(
            "#throughput",
            f"throughput {msgs:,.0f} msg/s (left graph)  {mbs:,.1f} MB/s (right)   ETA {duration(eta)}{why}   "
            f"failures {failures}" + (f"   {against}" if against else ""),
        )

    def _wave_detail(self, snapshot: Snapshot) -> None:
        name = self.selected_wave()
        wave = next((w for w in snapshot.waves if w.name == name), None)
        detail = wave_detail(wave, self._blockers.get(wave.name)) if wave else ""
        self.set_text("#wave-detail", detail)

    def _cursor_moved(self, key: str | None) -> None:
        if self.cockpit.snapshot is not None:
            self._wave_detail(self.cockpit.snapshot)

    @staticmethod
    def _readiness_text(snapshot: Snapshot) -> Text:
        r = snapshot.readiness
        if r is None:
            return Text("Readiness: not checked yet (cutover check --plan …)")
        text = Text(f"Readiness ({r.phase}): ")
        for index, (category, counts) in enumerate(sorted(r.by_category.items())):
            text.append((" | " if index else "") + f"{category}: ")
            for n, severity in enumerate(s for s in SEVERITIES if counts.get(s)):
                # Blockers in bold (and the error colour): they must stand out without colour too.
                style = "bold red" if severity == "blocker" else ("yellow" if severity == "warning" else "")
                text.append((", " if n else "") + f"{counts[severity]} {severity}", style=style)
        if r.checks_error:
            text.append(f"; {r.checks_error} check(s) could not run", style="bold")
        return text

    def selected_wave(self) -> str | None:
        """The wave under the cursor, if any."""
        try:
            return self.query_one("#waves", FleetTable).cursor_key
        except NoMatches:
            return None

    def on_fleet_table_row_selected(self, event: FleetTable.RowSelected) -> None:
        self.cockpit.open_mailboxes(wave=event.key)


def progress_cell(wave: WaveSummary) -> str:
    """The bar and percentage; a cancelled wave says so instead."""
    if wave.cancelled:
        return f"{state_label('cancelled')}"
    return f"{bar(wave.fraction, 6)} {percent(wave.fraction)}"


def last_run(wave: WaveSummary) -> str:
    if wave.running:
        return "running"
    return wave.last_run_status or "not run"


def blockers_by_wave(snapshot: Snapshot, wave_of: dict[str, str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """The unwaived readiness blockers about each wave's own mailboxes (``wave_of``: mailbox → wave):
    wave → mailbox → checks, in one pass over the blockers."""
    if snapshot.readiness is None or not snapshot.readiness.blockers:
        return {}
    grouped: dict[str, dict[str, tuple[str, ...]]] = {}
    for mailbox, checks in snapshot.readiness.blockers.items():
        if mailbox in wave_of:
            grouped.setdefault(wave_of[mailbox], {})[mailbox] = checks
    return grouped


def wave_detail(wave: WaveSummary, blockers: dict[str, tuple[str, ...]] | None = None) -> str:
    """Everything about one wave, in words (wraps under the table), its readiness blockers by name."""
    copied = f"{wave.messages_done:,} of {wave.messages_total:,} messages copied ({percent(wave.fraction).strip()})"
    if wave.bytes_total:
        copied += f", {volume(wave.bytes_done)} of {volume(wave.bytes_total)}"
    state = "cancelled" if wave.cancelled else last_run(wave)
    blocked = "; ".join(f"{mailbox} ({', '.join(checks)})" for mailbox, checks in (blockers or {}).items())
    return (
        f"{wave.name}: {wave.mailboxes} mailboxes: {states_text(wave.states)}; {copied}; "
        f"{wave.failed} failed, {wave.skipped} skipped; "
        + (f"last run {state}" if wave.last_run_status or wave.running or wave.cancelled else "no run yet")
        + (f"; BLOCKED by readiness: {blocked}" if blocked else "")
        + (f"; {wave.window.sentence()}" if wave.window else "")
    )


def running_now(snapshot: Snapshot) -> str:
    """ "running now: wave-2 (1 of 4 mailboxes): dave@… in INBOX", or that nothing runs."""
    running = [w for w in snapshot.waves if w.running or w.running_mailboxes]
    if not running:
        return "running now: nothing"
    waves = ", ".join(f"{w.name} ({w.running_mailboxes} of {w.mailboxes} mailboxes)" for w in running)
    mailboxes = ", ".join(
        m.source + (f" in {m.current_folder}" if m.current_folder else "") for m in snapshot.active
    )
    more = sum(w.running_mailboxes for w in running) - len(snapshot.active)
    return (
        f"running now: {waves}"
        + (f": {mailboxes}" if mailboxes else "")
        + (f" and {more} more" if more > 0 else "")
    )


def pacing_now(rows: Sequence[PacingRow]) -> str:
    """The service's throttling, while a run paces its requests: who waits, how long and in the
    service's words, or how close to its budget the busiest scope runs."""
    if not rows:
        return ""
    waiting = [r for r in rows if r.backoff_left() > 0]
    back_offs = sum(r.back_offs for r in rows)
    if waiting:
        worst = max(waiting, key=lambda r: r.backoff_left())
        return (
            f"THROTTLED: {len(waiting)} of {len(rows)} paced scope(s) waiting; longest {worst.scope} "
            f"{worst.backoff_left():.0f} s ({worst.backoff_reason or 'the service asked'}); {back_offs} back-off(s) so far"
        )
    busiest = max(rows, key=lambda r: r.requests_in_window / r.request_budget if r.request_budget else 0.0)
    use = (
        f"; busiest {busiest.scope} {busiest.requests_in_window:,}/{busiest.request_budget:,} requests per window"
        if busiest.request_budget
        else ""
    )
    return f"paced: {len(rows)} scope(s) within budget{use}; {back_offs} back-off(s) so far"


def estimate(snapshot: Snapshot, msg_rates: list[float], mb_rates: list[float]) -> tuple[float | None, str]:
    """Seconds until the running waves are copied, and why there is none: the volume left (surveyed, or
    counted by the passes) at the byte rate measured over the last samples; by messages when no volume
    is known."""
    running = [w for w in snapshot.waves if w.running]
    if not running:
        return None, " (nothing running)"
    byte_rate = sum(mb_rates) / len(mb_rates) * MB if mb_rates else 0.0
    msg_rate = sum(msg_rates) / len(msg_rates) if msg_rates else 0.0
    left_bytes = sum(w.bytes_left for w in running)
    if byte_rate > 0 and left_bytes:
        return left_bytes / byte_rate, f" ({volume(left_bytes)} left)"
    left_messages = sum(max(w.messages_total - w.messages_done, 0) for w in running)
    if msg_rate > 0 and left_messages:
        return left_messages / msg_rate, f" ({left_messages:,} messages left)"
    if not left_bytes and not left_messages:
        return None, " (no volume known: no survey, nothing listed yet)"
    return None, " (measuring the rate)"

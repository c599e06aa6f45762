"""Immutable snapshots of the state store, for the cockpit (and any other viewer).

The cockpit never talks to the runner: it reads these, a few times a second, from the same store
(WAL lets readers and the writer work at once), and sends requests through ``controls``. ``take``
reads only per-mailbox counters (kept by the engine), never the per-message ledger, so it stays cheap
with tens of thousands of mailboxes; ``StateStore.mailbox_detail`` reads the ledger of one mailbox,
``StateStore.message_history`` the attempts on one message.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from runners.plan.model import Plan
from runners.state.check_history import CategoryChecked, CheckRow, FindingRow
from runners.state.mailbox_reads import Event, MailboxQuery, MailboxRow
from runners.state.statuses import MailboxState, RunStatus
from runners.state.store import StateStore


@dataclass(frozen=True, slots=True)
class WaveSummary:
    name: str
    mailboxes: int
    states: dict[str, int]
    messages_total: int
    messages_done: int
    bytes_done: int
    failed: int
    skipped: int
    running: bool
    last_run_status: str | None
    #: When the wave's current run started (None unless running): the cutover window's clock.
    running_since: float | None = None


@dataclass(frozen=True, slots=True)
class ReadinessSummary:
    """The latest result of every check across runs: a partial re-run replaces only what it re-ran."""

    run_id: int  # the newest run (whatever its scope): a new one means the picture changed
    started: float
    phase: str
    #: category → severity → count of unwaived findings.
    by_category: dict[str, dict[str, int]]
    checks_error: int
    #: Each category's newest run: when, and who ran it (user@host).
    checked: tuple[CategoryChecked, ...] = ()
    #: Unwaived blockers by the object they are about (a mailbox, a domain, a server): object → checks.
    blockers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def blockers_of(self, sources: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """The blockers about these mailboxes (a wave's): mailbox → the checks that block it."""
        return {s: self.blockers[s] for s in sources if s in self.blockers}

    def blockers_elsewhere(self, sources: Iterable[str]) -> int:
        """How many blockers are about no mailbox of the plan (DNS, a server): they concern every wave."""
        mailboxes = set(sources)
        return sum(len(checks) for obj, checks in self.blockers.items() if obj not in mailboxes)


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken: float  # time.monotonic() when read, for rates between two snapshots
    waves: tuple[WaveSummary, ...]
    mailboxes: tuple[MailboxRow, ...]
    readiness: ReadinessSummary | None
    events: tuple[Event, ...]
    messages_done: int
    bytes_done: int
    #: Mailboxes matching the query (``mailboxes`` holds at most its limit of them) and in the plan.
    matching: int = 0
    total: int = 0

    def mailbox(self, source: str) -> MailboxRow | None:
        return next((m for m in self.mailboxes if m.source == source), None)


#: Every row, the way ``status`` and the tests read a snapshot.
ALL = MailboxQuery()
_SUMS = ("n", "mt", "md", "bd", "f", "s")


def take(store: StateStore, plan: Plan, *, events: int = 200, query: MailboxQuery | None = ALL) -> Snapshot:
    """A snapshot: wave totals always (summed in SQL), mailbox rows only as ``query`` asks (None: none)."""
    waves, known = _waves(store, plan)
    rows: list[MailboxRow] = []
    matching = 0
    if query is not None:
        rows, matching = _rows(store, plan, query, known)
    return Snapshot(
        taken=time.monotonic(),
        waves=waves,
        mailboxes=tuple(rows),
        readiness=_readiness(store),
        events=tuple(store.recent_events(events)),
        messages_done=sum(w.messages_done for w in waves),
        bytes_done=sum(w.bytes_done for w in waves),
        matching=matching,
        total=len(plan.mailboxes),
    )


def _waves(store: StateStore, plan: Plan) -> tuple[tuple[WaveSummary, ...], int]:
    sums: dict[str, dict[str, int]] = {}
    states: dict[str, Counter[str]] = {}
    known = 0
    for t in store.wave_state_totals():
        known += t.mailboxes
        wave = sums.setdefault(t.wave, dict.fromkeys(_SUMS, 0))
        for key, value in zip(
            _SUMS,
            (t.mailboxes, t.messages_total, t.messages_done, t.bytes_done, t.failed, t.skipped),
            strict=True,
        ):
            wave[key] += value
        states.setdefault(t.wave, Counter())[t.state] += t.mailboxes
    runs = store.last_run_per_wave()
    planned = Counter(m.wave for m in plan.mailboxes)
    out = []
    for name in plan.waves:
        wave = sums.get(name, dict.fromkeys(_SUMS, 0))
        counted = states.get(name, Counter())
        never_run = planned[name] - wave["n"]
        if never_run > 0:  # planned, never touched by a run
            counted[MailboxState.PENDING] += never_run
        run = runs.get(name)
        status, started = (run.status, run.started) if run else (None, None)
        running = status == RunStatus.RUNNING
        out.append(
            WaveSummary(name, planned[name], dict(counted), wave["mt"], wave["md"], wave["bd"], wave["f"], wave["s"],
                        running, status, started if running else None)
        )  # fmt: skip
    return tuple(out), known


def _rows(store: StateStore, plan: Plan, query: MailboxQuery, known: int) -> tuple[list[MailboxRow], int]:
    matching = store.count_mailboxes(query)
    rows = store.mailbox_rows(query)
    if known < len(plan.mailboxes) and not query.attention:
        # Planned mailboxes no run has touched yet are not in the store: they show as pending.
        seen = store.mailbox_sources()
        needle = query.text.lower()
        for entry in plan.mailboxes:
            if entry.source in seen or query.source not in (None, entry.source):
                continue
            if (query.wave and entry.wave != query.wave) or not _has(
                needle, entry.source, entry.target, MailboxState.PENDING
            ):
                continue
            matching += 1
            if query.limit is None or len(rows) < query.limit:
                rows.append(MailboxRow(entry.source, entry.target, entry.wave, MailboxState.PENDING, 0, 0, 0, 0, 0,
                                       0, None, None, None, None))  # fmt: skip
    return rows, matching


def _has(needle: str, *texts: str) -> bool:
    return not needle or any(needle in t.lower() for t in texts)


#: The last summary read through each store: it changes only with a new check run, and counting a
#: large fleet's findings twice a second would cost the poller tens of milliseconds each time.
_READINESS: weakref.WeakKeyDictionary[StateStore, ReadinessSummary] = weakref.WeakKeyDictionary()


def _readiness(store: StateStore) -> ReadinessSummary | None:
    last = store.last_check_run()
    if last is None:
        return None
    cached = _READINESS.get(store)
    if cached is not None and cached.run_id == last.id:
        return cached
    _READINESS[store] = summary = _read_readiness(store, last.id, last.started, last.phase)
    return summary


def _read_readiness(store: StateStore, run_id: int, started: float, phase: str) -> ReadinessSummary:
    errors = sum(1 for c in store.latest_checks_not_ok() if c.state == "error")
    blockers: dict[str, list[str]] = {}
    for _kind, obj, check in store.latest_blockers():
        blockers.setdefault(obj, []).append(check)
    return ReadinessSummary(
        run_id,
        started,
        phase,
        store.latest_finding_counts(),
        errors,
        tuple(store.categories_checked()),
        {obj: tuple(checks) for obj, checks in blockers.items()},
    )


def readiness_detail(store: StateStore) -> tuple[tuple[FindingRow, ...], tuple[CheckRow, ...]]:
    """Every check's latest findings across runs (worst first) and the checks whose latest run failed."""
    if store.last_check_run() is None:
        return (), ()
    return tuple(store.latest_findings()), tuple(store.latest_checks_not_ok())


def readiness_page(
    store: StateStore, plan: Plan, text: str = "", limit: int = 500
) -> tuple[tuple[FindingRow, ...], int, tuple[CheckRow, ...]]:
    """The first ``limit`` latest findings (worst first) matching ``text`` (which may also name a wave:
    the findings about its mailboxes match), how many match in all, and the checks whose latest run
    failed."""
    needle = text.strip().lower()
    sources = [m.source for m in plan.mailboxes if needle and needle in m.wave.lower()]
    rows, matching = store.latest_findings_page(needle, sources, limit)
    return tuple(rows), matching, tuple(store.latest_checks_not_ok())

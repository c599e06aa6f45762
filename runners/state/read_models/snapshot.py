"""Immutable snapshots of the state store, for the cockpit (and any other viewer).

The cockpit never talks to the runner: it reads these, a few times a second, from the same store
(WAL lets readers and the writer work at once), and sends requests through ``controls``.

The counts shown are cumulative, from the ledger: what every pass and retry so far copied of what the
source holds (the engine's per-mailbox counters are the current run's only: a retry of one message
starts them at 0/1). Summing the ledger of a whole fleet on every poll would cost the ledger's size,
so a ``LedgerCache`` keeps each mailbox's sums and re-reads only mailboxes whose ``updated`` stamp
moved, a bounded number per poll; until a mailbox is counted its counters stand in.
``StateStore.mailbox_detail`` reads the ledger of one mailbox, ``StateStore.message_history`` the
attempts on one message.
"""

from __future__ import annotations

import bisect
import heapq
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from runners.plan.model import MailboxEntry, Plan
from runners.state.check_rows import CategoryChecked, CheckRow, FindingRow
from runners.state.mailbox_views import (
    Event,
    FleetCounters,
    LedgerProgress,
    MailboxDetail,
    MailboxQuery,
    MailboxRow,
    cumulative,
)
from runners.state.pacing import PacingRow
from runners.state.read_models.planned import PlannedFleet
from runners.state.read_models.window import WaveWindow, wave_windows
from runners.state.statuses import MailboxState, RunStatus
from runners.state.store import StateStore


@dataclass(frozen=True, slots=True)
class WaveSummary:
    name: str
    mailboxes: int
    states: dict[str, int]
    #: What the wave's sources hold and what is copied of it, cumulative across passes and retries.
    messages_total: int
    messages_done: int
    bytes_done: int
    failed: int
    skipped: int
    running: bool
    last_run_status: str | None
    #: When the wave's current run started (None unless running): the cutover window's clock.
    running_since: float | None = None
    #: The wave's volume in bytes: the survey's, or what its folders or the run counted if larger.
    bytes_total: int = 0
    #: Where the wave stands in its cutover window (stage, who holds it, late mail caught).
    window: WaveWindow | None = None

    @property
    def running_mailboxes(self) -> int:
        return self.states.get(MailboxState.RUNNING, 0)

    @property
    def cancelled(self) -> bool:
        """Cancelled by an operator and not running again."""
        return not self.running and self.states.get(MailboxState.CANCELLED, 0) > 0

    @property
    def complete(self) -> bool:
        """Every mailbox finished (ok, partial or failed): nothing running, paused, pending or cancelled."""
        finished = (MailboxState.OK, MailboxState.PARTIAL, MailboxState.FAILED)
        return not self.running and sum(self.states.get(s, 0) for s in finished) == self.mailboxes

    @property
    def fraction(self) -> float:
        """Copied of what the sources hold; below 1 while anything is left to do (never a false 100 %)."""
        done = min(self.messages_done / self.messages_total, 1.0) if self.messages_total else 0.0
        return done if self.complete else min(done, 0.99)

    @property
    def bytes_left(self) -> int:
        return max(self.bytes_total - self.bytes_done, 0)


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
    #: Mailboxes matching the query (``mailboxes`` holds at most its limit of them) and in the plan;
    #: None when not counted yet (a view's rows read early come before their count: ``with_rows``).
    matching: int | None = 0
    total: int = 0
    #: The mailboxes being copied right now (most recently active first, at most ``ACTIVE_SHOWN``).
    active: tuple[MailboxRow, ...] = ()
    #: Mailboxes of the queried wave (the plan's, not the store's): "4 of 50" counts against these.
    scope_total: int = 0
    #: Throttled scopes of the running waves (``runners.pacing``): back-offs and budget use.
    pacing: tuple[PacingRow, ...] = ()
    #: What ``mailboxes`` were read for (None: no rows were read, for a view that shows none): a view
    #: opened while a slow read for another was under way knows the rows are not its own.
    query: MailboxQuery | None = None
    #: Where the window of ``mailboxes`` starts (``mailbox_pages``): None for the first of the list.
    window_start: str | None = None
    #: The ledger of the one mailbox ``query`` names (``MailboxQuery.source``: the mailbox view), read
    #: with the rest in the poller's thread; None for any other query.
    detail: MailboxDetail | None = None

    def mailbox(self, source: str) -> MailboxRow | None:
        return next((m for m in self.mailboxes if m.source == source), None)


#: Every row, the way ``status`` and the tests read a snapshot.
ALL = MailboxQuery()
_SUMS = ("n", "mt", "md", "bt", "bd", "f", "s")
#: Running mailboxes named by the overview's "running now".
ACTIVE_SHOWN = 5
#: A filter's count is made again at most every this many times what it cost last (a tenth of the
#: reader's time at most), and at least every ``COUNT_MAX_AGE`` seconds while the fleet changes.
COUNT_SPACING = 10.0
COUNT_MAX_AGE = 5.0
#: A view's rows read early come with their count when the plan has at most this many mailboxes (a
#: few milliseconds); a larger fleet's rows come first and the whole poll that follows counts them.
COUNT_INLINE = 10_000


@dataclass(slots=True)
class LedgerCache:
    """Each mailbox's ledger sums, and how far its cumulative counts are from the run's counters.

    Every ``refresh`` re-reads the ledger of the mailboxes whose ``updated`` stamp moved past a
    watermark, oldest change first, at most ``per_poll`` of them (None: all), so a fleet of running
    mailboxes costs a bounded slice of the ledger per poll and an idle mailbox is read once. The wave
    totals are then the counters summed in SQL plus each wave's sum of those differences, kept up to
    date as mailboxes are re-read; a running mailbox counts by its counters until it stops (its row
    shows it cumulative). The survey changes only when the checks run: re-read every ``survey_seconds``.
    """

    per_poll: int | None = None
    survey_seconds: float = 60.0
    ledgers: dict[str, LedgerProgress] = field(default_factory=dict)
    #: source → (wave, cumulative minus counters: copied, holds, bytes copied, volume, failed, skipped).
    _deltas: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    _wave_deltas: dict[str, list[int]] = field(default_factory=dict)
    _mark: tuple[float, str] = (-1.0, "")
    _survey: dict[str, tuple[int, int]] = field(default_factory=dict)
    _survey_read: float | None = None
    _fleet: PlannedFleet | None = None
    #: The mailboxes view's counts by filter: (count, the fleet's totals it was made at, when, how long
    #: it took). A count is a pass over the mailboxes a filter can't narrow by index, so it is made
    #: again only when the totals moved, and then not more often than ``COUNT_SPACING`` times its cost.
    _counts: dict[tuple[str | None, str, bool, str | None], tuple[int, object, float, float]] = field(
        default_factory=dict
    )

    def fleet(self, plan: Plan) -> PlannedFleet:
        """The plan's mailbox list as polls need it, worked out once per plan (``planned.py``)."""
        if self._fleet is None or self._fleet.plan is not plan:
            self._fleet = PlannedFleet(plan)
        return self._fleet

    def refresh(self, store: StateStore) -> None:
        survey = self.survey(store)
        while True:
            rows = store.changed_mailboxes(self._mark, self.per_poll)
            if not rows:
                return
            ledgers = store.ledger_progress([row[0] for row in rows])
            for row in rows:
                self._count(row, ledgers[row[0]], survey.get(row[0], (0, 0))[1])
            self._mark = (rows[-1][9] or 0.0, rows[-1][0])
            if self.per_poll is not None:
                return

    def _count(self, row: FleetCounters, ledger: LedgerProgress, surveyed: int) -> None:
        source, wave, state, mt, md, bt, bd, f, s, _ = row
        self.ledgers[source] = ledger
        copied, holds, copied_bytes, volume, failed, skipped = cumulative(state, mt, md, bt, bd, f, s, ledger)
        unlisted = max(volume, surveyed) - bt
        if state == MailboxState.RUNNING:
            # Its counters move on after this read: a difference taken now would be added to counts
            # that already include what it made up for. The wave counts a running mailbox by its
            # counters (its row shows the cumulative ones, read live); only the survey's volume it
            # has not listed yet is added, for the ETA.
            delta: tuple[int, ...] = (0, 0, 0, unlisted, 0, 0)
        else:
            delta = (copied - md, holds - mt, copied_bytes - bd, unlisted, failed - f, skipped - s)
        old = self._deltas.pop(source, None)
        if old is not None:
            sums = self._wave_deltas[old[0]]
            for i, value in enumerate(old[1]):
                sums[i] -= value
        if any(delta):
            self._deltas[source] = (wave, delta)
            sums = self._wave_deltas.setdefault(wave, [0] * 6)
            for i, value in enumerate(delta):
                sums[i] += value

    def count(self, store: StateStore, query: MailboxQuery, totals: object) -> int:
        """How many mailboxes the store holds for ``query``'s filter (its window aside), made again only
        when ``totals`` (the fleet's state counts) changed, and then at most every so often."""
        key = _filter_key(query)
        now = time.monotonic()
        known = self._counts.get(key)
        if known is not None:
            count, made_at, when, cost = known
            if made_at == totals or now - when < min(COUNT_SPACING * cost, COUNT_MAX_AGE):
                return count
        count = store.count_mailboxes(query)
        self._counts[key] = (count, totals, now, time.monotonic() - now)
        return count

    def counted(self, store: StateStore, plan: Plan, query: MailboxQuery) -> int | None:
        """The last count made for ``query``'s filter (a window moved: the same filter), or one made
        now for a plan small enough that it is cheap; None: the next whole poll counts it."""
        known = self._counts.get(_filter_key(query))
        if known is not None:
            return known[0]
        if len(plan.mailboxes) <= COUNT_INLINE:
            return self.count(store, query, None)
        return None

    def wave_delta(self, wave: str) -> list[int]:
        return self._wave_deltas.get(wave, [0] * 6)

    def survey(self, store: StateStore) -> dict[str, tuple[int, int]]:
        now = time.monotonic()
        if self._survey_read is None or now - self._survey_read >= self.survey_seconds:
            self._survey, self._survey_read = store.survey_totals(), now
        return self._survey


def take(
    store: StateStore,
    plan: Plan,
    *,
    events: int = 200,
    query: MailboxQuery | None = ALL,
    ledger: LedgerCache | None = None,
) -> Snapshot:
    """A snapshot: wave totals always, mailbox rows only as ``query`` asks (None: none). Pass the same
    ``ledger`` cache poll after poll (the poller does); without one every mailbox's ledger is read."""
    ledger = ledger or LedgerCache()
    ledger.refresh(store)
    waves, unseen, done = _waves(store, plan, ledger)
    rows: list[MailboxRow] = []
    matching: int | None = 0
    start = None
    if query is not None:
        totals = tuple((w.name, tuple(sorted(w.states.items())), w.failed, w.skipped) for w in waves)
        rows, start, unseen_matching = _rows(store, query, unseen)
        matching = ledger.count(store, query, totals) + unseen_matching
        rows = [row.with_ledger(ledger.ledgers.get(row.source)) for row in rows]
    active = [row.with_ledger(ledger.ledgers.get(row.source)) for row in store.active_mailboxes(ACTIVE_SHOWN)]
    return Snapshot(
        taken=time.monotonic(),
        waves=waves,
        mailboxes=tuple(rows),
        readiness=_readiness(store),
        events=tuple(store.recent_events(events)),
        # The engine's counters, for rates between snapshots (they only grow while a run goes on).
        messages_done=done[0],
        bytes_done=done[1],
        matching=matching,
        total=len(plan.mailboxes),
        active=tuple(active),
        scope_total=ledger.fleet(plan).per_wave[query.wave]
        if query is not None and query.wave
        else len(plan.mailboxes),
        pacing=tuple(store.running_pacing()),
        query=query,
        window_start=start,
        detail=_detail(store, query),
    )


def with_rows(
    store: StateStore, plan: Plan, snapshot: Snapshot, query: MailboxQuery, ledger: LedgerCache
) -> Snapshot:
    """``snapshot`` with the mailbox rows of another ``query``, read now; the rest as it was (same
    ``taken``: no rate is measured across it). What a view that just opened or changed its filter
    shows at once, a few milliseconds after the key, instead of after a whole snapshot of the fleet."""
    rows, start, unseen_matching = _rows(store, query, ledger.fleet(plan).last_unseen)
    counted = ledger.counted(store, plan, query)
    return replace(
        snapshot,
        mailboxes=tuple(row.with_ledger(ledger.ledgers.get(row.source)) for row in rows),
        matching=None if counted is None else counted + unseen_matching,
        scope_total=ledger.fleet(plan).per_wave[query.wave] if query.wave else len(plan.mailboxes),
        query=query,
        window_start=start,
        detail=_detail(store, query),
    )


def _detail(store: StateStore, query: MailboxQuery | None) -> MailboxDetail | None:
    """One mailbox's ledger, for a query that names one (a pass over its messages, not the fleet's)."""
    return None if query is None or query.source is None else store.mailbox_detail(query.source)


def _waves(
    store: StateStore, plan: Plan, ledger: LedgerCache
) -> tuple[tuple[WaveSummary, ...], tuple[MailboxEntry, ...], tuple[int, int]]:
    """The waves' totals (the counters summed in SQL, corrected by the ledger cache), the planned
    mailboxes the store has no row for yet (for the pending rows too), and the counters' messages and
    bytes done (for rates)."""
    sums: dict[str, dict[str, int]] = {}
    states: dict[str, Counter[str]] = {}
    known = messages_done = bytes_done = 0
    for t in store.wave_state_totals():
        known += t.mailboxes
        messages_done += t.messages_done
        bytes_done += t.bytes_done
        wave = sums.setdefault(t.wave, dict.fromkeys(_SUMS, 0))
        wave["n"] += t.mailboxes
        wave["mt"] += t.messages_total
        wave["md"] += t.messages_done
        wave["bt"] += t.bytes_total
        wave["bd"] += t.bytes_done
        wave["f"] += t.failed
        wave["s"] += t.skipped
        states.setdefault(t.wave, Counter())[t.state] += t.mailboxes
    for name, wave in sums.items():
        d_md, d_mt, d_bd, d_bt, d_f, d_s = ledger.wave_delta(name)
        wave["md"] += d_md
        wave["mt"] += d_mt
        wave["bd"] += d_bd
        wave["bt"] += d_bt
        wave["f"] += d_f
        wave["s"] += d_s
    fleet = ledger.fleet(plan)
    unseen: tuple[MailboxEntry, ...] = ()
    if known < len(plan.mailboxes):  # never run: the survey is still part of the wave's volume
        unseen = fleet.unseen(store, known)
        for wave_name, size in fleet.unseen_bytes(ledger.survey(store), known).items():
            sums.setdefault(wave_name, dict.fromkeys(_SUMS, 0))["bt"] += size
    runs = store.last_run_per_wave()
    planned = fleet.per_wave
    windows = wave_windows(store, fleet.waves)
    out = []
    for name in fleet.waves:
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
                        running, status, started if running else None, wave["bt"], windows.get(name))
        )  # fmt: skip
    return tuple(out), unseen, (messages_done, bytes_done)


def _rows(
    store: StateStore, query: MailboxQuery, unseen: tuple[MailboxEntry, ...]
) -> tuple[list[MailboxRow], str | None, int]:
    """The window of rows ``query`` asks for, where it starts, and how many planned mailboxes the store
    has no row for match it (the store's own are counted apart: ``LedgerCache.count``).

    Those planned mailboxes show as pending rows, merged into the store's in the list's order (a
    pending mailbox has nothing counted: ``_rank``), so a window read backwards from the end holds
    the same rows as one reached by scrolling down from the first."""
    planned = [] if query.attention else _matching_unseen(query, unseen)
    if not planned:
        page = store.mailbox_page(query)
        return page.rows, page.start, 0
    rank = _rank(query.order)
    sources = [entry.source for entry in planned]
    start = query.start
    if query.back:
        anchor = None if start is None else _anchor(store, query, start, sources, rank)
        stop = len(planned) if anchor is None else _first_at(sources, anchor)
        before = [_pending(entry) for entry in planned[max(0, stop - query.back) : stop]]
        earlier = list(heapq.merge(store.mailboxes_before(query, start, query.back)[::-1], before, key=rank))
        start = earlier[-query.back].source if len(earlier) >= query.back else None
    page = store.mailbox_page(replace(query, start=start, back=0))
    first = 0 if start is None else _first_at(sources, _anchor(store, query, start, sources, rank, page.rows))
    later = planned[first : first + query.limit if query.limit else None]
    rows = list(heapq.merge(page.rows, [_pending(entry) for entry in later], key=rank))
    return (rows[: query.limit] if query.limit else rows), start, len(planned)


def _matching_unseen(query: MailboxQuery, unseen: tuple[MailboxEntry, ...]) -> list[MailboxEntry]:
    """The planned mailboxes without a row in the store that ``query``'s filter keeps, by source."""
    needle = query.text.lower()
    return [
        entry
        for entry in unseen
        if query.source in (None, entry.source)
        and not (query.wave and entry.wave != query.wave)
        and _has(needle, entry.source, entry.target, MailboxState.PENDING)
    ]


def _pending(entry: MailboxEntry) -> MailboxRow:
    return MailboxRow(entry.source, entry.target, entry.wave, MailboxState.PENDING, 0, 0, 0, 0, 0, 0, None, None,
                      None, None)  # fmt: skip


#: Where a row sorts against a pending one: (0, "") before every pending row, else (1, its source).
Rank = Callable[[MailboxRow], tuple[int, str]]


def _rank(order: str) -> Rank:
    """A row's place among pending rows in ``order`` (``mailbox_pages``): the orders put a larger failed
    count or progress first, then go by source, and a pending row's value is 0. So a row of a larger
    value comes before every pending row (the store's rows keep their own order among themselves),
    and a row of value 0 goes by its source among them."""
    if order == "failed":
        return lambda row: (0, "") if row.failed > 0 else (1, row.source)
    if order == "progress":  # messages_done / messages_total (or / 1) is above 0 when anything is done
        return lambda row: (0, "") if row.messages_done > 0 else (1, row.source)
    return lambda row: (1, row.source)


def _anchor(
    store: StateStore,
    query: MailboxQuery,
    start: str,
    sources: list[str],
    rank: Rank,
    rows: list[MailboxRow] | None = None,
) -> tuple[int, str]:
    """The rank of a window's first mailbox: a pending one's, or its row's (read if not in ``rows``)."""
    index = bisect.bisect_left(sources, start)
    if index < len(sources) and sources[index] == start:
        return (1, start)
    if rows is None:
        rows = store.mailbox_page(replace(query, start=start, back=0, limit=1)).rows
    return rank(rows[0]) if rows and rows[0].source == start else (1, start)


def _first_at(sources: list[str], anchor: tuple[int, str]) -> int:
    """The first pending row at or after ``anchor`` (``sources`` sorted: every pending rank is (1, source))."""
    return 0 if anchor[0] == 0 else bisect.bisect_left(sources, anchor[1])


def _filter_key(query: MailboxQuery) -> tuple[str | None, str, bool, str | None]:
    """What a count of ``query`` depends on: its filter, not its window or order."""
    return (query.wave, query.text, query.attention, query.source)


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

"""Immutable snapshots of the state store, for the cockpit (and any other viewer).

The cockpit never talks to the runner: it reads these, a few times a second, from the same SQLite
file (WAL lets readers and the writer work at once), and sends requests through ``controls``.
``take`` reads only per-mailbox counters (kept by the engine), never the per-message ledger, so it
stays cheap with tens of thousands of mailboxes; ``mailbox_detail`` reads the ledger of one mailbox,
``message_history`` the attempts on one message.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from runners.plan.model import Plan
from runners.state.store import StateStore


@dataclass(frozen=True, slots=True)
class MailboxRow:
    source: str
    target: str
    wave: str
    state: str  # pending | running | paused | ok | partial | failed | cancelled
    messages_total: int
    messages_done: int
    bytes_total: int
    bytes_done: int
    failed: int
    skipped: int
    current_folder: str | None
    error: str | None
    error_kind: str | None
    updated: float | None

    @property
    def progress(self) -> float:
        return min(self.messages_done / self.messages_total, 1.0) if self.messages_total else 0.0

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "pending") and not self.failed and not self.skipped and not self.error


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
    run_id: int
    started: float
    phase: str
    #: category → severity → count of unwaived findings.
    by_category: dict[str, dict[str, int]]
    checks_error: int


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    ts: float
    level: str
    kind: str
    mailbox: str | None
    folder: str | None
    message: str


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


@dataclass(frozen=True, slots=True)
class MailboxQuery:
    """Which mailbox rows a viewer wants: filtering, ordering and the limit run in SQL, so a poll
    costs what is shown, not the size of the fleet."""

    wave: str | None = None
    #: Substring of the source, target or state (case-insensitive); "" for any.
    text: str = ""
    #: Only mailboxes that need attention: not ok, failures or skips, an error (running ones too).
    attention: bool = False
    #: One mailbox by its source address.
    source: str | None = None
    order: str = "source"  # source (or mailbox) | failed | progress
    limit: int | None = None


#: Every row, the way ``status`` and the tests read a snapshot.
ALL = MailboxQuery()
_COLUMNS = (
    "source, target, wave, state, messages_total, messages_done, bytes_total, bytes_done, failed, skipped, "
    "current_folder, error, error_kind, updated"
)
_ATTENTION = "(state NOT IN ('ok', 'pending') OR failed > 0 OR skipped > 0 OR error IS NOT NULL)"
_ORDER = {
    "source": "source",
    "mailbox": "source",
    "failed": "failed DESC, source",
    "progress": "CAST(messages_done AS REAL) / MAX(messages_total, 1) DESC, source",
}
_SUMS = ("n", "mt", "md", "bd", "f", "s")


def take(store: StateStore, plan: Plan, *, events: int = 200, query: MailboxQuery | None = ALL) -> Snapshot:
    """A snapshot: wave totals always (summed in SQL), mailbox rows only as ``query`` asks (None: none)."""
    waves, known = _waves(store, plan)
    rows: list[MailboxRow] = []
    matching = 0
    if query is not None:
        rows, matching = _rows(store, plan, query, known)
    tail = store.query(
        "SELECT id, ts, level, kind, mailbox, folder, message FROM events ORDER BY id DESC LIMIT ?", (events,)
    )
    return Snapshot(
        taken=time.monotonic(),
        waves=waves,
        mailboxes=tuple(rows),
        readiness=_readiness(store),
        events=tuple(Event(*tuple(r)) for r in reversed(tail)),
        messages_done=sum(w.messages_done for w in waves),
        bytes_done=sum(w.bytes_done for w in waves),
        matching=matching,
        total=len(plan.mailboxes),
    )


def _waves(store: StateStore, plan: Plan) -> tuple[tuple[WaveSummary, ...], int]:
    sums: dict[str, dict[str, int]] = {}
    states: dict[str, Counter[str]] = {}
    known = 0
    for r in store.query(
        "SELECT wave, state, COUNT(*) AS n, SUM(messages_total) AS mt, SUM(messages_done) AS md, "
        "SUM(bytes_done) AS bd, SUM(failed) AS f, SUM(skipped) AS s FROM mailboxes GROUP BY wave, state"
    ):
        known += int(r["n"])
        wave = sums.setdefault(r["wave"], dict.fromkeys(_SUMS, 0))
        for key in _SUMS:
            wave[key] += int(r[key] or 0)
        states.setdefault(r["wave"], Counter())[r["state"]] += int(r["n"])
    runs = {
        r["wave"]: (r["status"], r["started"])
        for r in store.query("SELECT wave, status, started FROM runs ORDER BY id")
    }
    planned = Counter(m.wave for m in plan.mailboxes)
    out = []
    for name in plan.waves:
        wave = sums.get(name, dict.fromkeys(_SUMS, 0))
        counted = states.get(name, Counter())
        never_run = planned[name] - wave["n"]
        if never_run > 0:  # planned, never touched by a run
            counted["pending"] += never_run
        status, started = runs.get(name, (None, None))
        out.append(
            WaveSummary(name, planned[name], dict(counted), wave["mt"], wave["md"], wave["bd"], wave["f"], wave["s"],
                        status == "running", status, started if status == "running" else None)
        )  # fmt: skip
    return tuple(out), known


def _rows(store: StateStore, plan: Plan, query: MailboxQuery, known: int) -> tuple[list[MailboxRow], int]:
    where: list[str] = []
    params: list[object] = []
    if query.source is not None:
        where.append("source = ?")
        params.append(query.source)
    if query.wave:
        where.append("wave = ?")
        params.append(query.wave)
    if query.attention:
        where.append(_ATTENTION)
    if query.text:
        where.append("(source LIKE ? OR target LIKE ? OR state LIKE ?)")
        params += [f"%{query.text}%"] * 3
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    matching = int(store.query(f"SELECT COUNT(*) AS n FROM mailboxes{clause}", params)[0]["n"])
    limit = f" LIMIT {int(query.limit)}" if query.limit else ""
    rows = [
        MailboxRow(*tuple(r))
        for r in store.query(
            f"SELECT {_COLUMNS} FROM mailboxes{clause} ORDER BY {_ORDER[query.order]}{limit}", params
        )
    ]
    if known < len(plan.mailboxes) and not query.attention:
        # Planned mailboxes no run has touched yet are not in the store: they show as pending.
        seen = {r["source"] for r in store.query("SELECT source FROM mailboxes")}
        needle = query.text.lower()
        for entry in plan.mailboxes:
            if entry.source in seen or query.source not in (None, entry.source):
                continue
            if (query.wave and entry.wave != query.wave) or not _has(
                needle, entry.source, entry.target, "pending"
            ):
                continue
            matching += 1
            if query.limit is None or len(rows) < query.limit:
                rows.append(MailboxRow(entry.source, entry.target, entry.wave, "pending", 0, 0, 0, 0, 0, 0, None,
                                       None, None, None))  # fmt: skip
    return rows, matching


def _has(needle: str, *texts: str) -> bool:
    return not needle or any(needle in t.lower() for t in texts)


def _readiness(store: StateStore) -> ReadinessSummary | None:
    last = store.query("SELECT id, started, phase FROM check_runs ORDER BY id DESC LIMIT 1")
    if not last:
        return None
    run_id = int(last[0]["id"])
    by_category: dict[str, dict[str, int]] = {}
    for r in store.query(
        "SELECT r.category, f.severity, COUNT(*) AS n FROM findings f JOIN check_results r "
        "ON r.run_id = f.run_id AND r.check_id = f.check_id WHERE f.run_id = ? AND f.waiver IS NULL "
        "GROUP BY r.category, f.severity",
        (run_id,),
    ):
        by_category.setdefault(r["category"], {})[r["severity"]] = int(r["n"])
    errors = store.query(
        "SELECT COUNT(*) AS n FROM check_results WHERE run_id = ? AND state = 'error'", (run_id,)
    )
    return ReadinessSummary(
        run_id, float(last[0]["started"]), last[0]["phase"], by_category, int(errors[0]["n"])
    )


@dataclass(frozen=True, slots=True)
class FolderDetail:
    source: str
    target: str
    source_messages: int | None  # as of the last completed pass
    source_bytes: int | None  # the same pass
    copied: int
    copied_bytes: int
    skipped: int
    failed: int
    pending: int
    excluded: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class MessageIssue:
    folder: str
    uid: int
    size: int
    internaldate: str | None
    status: str
    reason: str | None
    attempts: int
    #: Where to find it on the source again (runners.report.peek): the folder's name there, the
    #: ledger's key (UID, POP3 UIDL or Maildir file name) and UIDVALIDITY.
    source_name: str = ""
    key: str = ""
    uidvalidity: int = 0


@dataclass(frozen=True, slots=True)
class MessageAttempt:
    """One outcome that left a message not copied: failed, skipped, or waived by an operator."""

    run_id: int | None  # None: an operator's decision, not a run
    at: float
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class MailboxDetail:
    source: str
    folders: tuple[FolderDetail, ...] = ()
    issues: tuple[MessageIssue, ...] = field(default_factory=tuple)


#: Ledger counts per status of the messages joined as ``m``, for a query grouped by mailbox or folder
#: (``status`` and ``mailbox_detail`` both count this way).
LEDGER_COUNTS = (
    "COALESCE(SUM(m.status = 'copied'), 0) AS copied, COALESCE(SUM(m.status = 'skipped'), 0) AS skipped, "
    "COALESCE(SUM(m.status = 'failed'), 0) AS failed, COALESCE(SUM(m.status = 'pending'), 0) AS pending, "
    "COALESCE(SUM(CASE WHEN m.status = 'copied' THEN m.size END), 0) AS bytes_copied"
)


def mailbox_detail(store: StateStore, source: str) -> MailboxDetail:
    """Folders with their ledger counts, and every message not copied with its reason."""
    folders = store.query(
        f"SELECT f.id, f.source_path, f.target_name, f.messages, f.bytes, f.excluded, f.error, {LEDGER_COUNTS} "
        "FROM folders f JOIN mailboxes mb ON mb.id = f.mailbox_id LEFT JOIN messages m ON m.folder_id = f.id "
        "WHERE mb.source = ? GROUP BY f.id ORDER BY f.source_path",
        (source,),
    )
    issues = store.query(
        "SELECT f.source_path, m.src_uid, m.size, m.internaldate, m.status, m.reason, m.attempts, f.source_name, "
        "m.src_key, m.uidvalidity FROM messages m "
        "JOIN folders f ON f.id = m.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id "
        "WHERE mb.source = ? AND m.status IN ('failed', 'skipped', 'pending') ORDER BY f.source_path, m.src_uid",
        (source,),
    )
    return MailboxDetail(
        source,
        tuple(
            FolderDetail(
                r["source_path"],
                r["target_name"],
                r["messages"],
                r["bytes"],
                r["copied"],
                r["bytes_copied"],
                r["skipped"],
                r["failed"],
                r["pending"],
                r["excluded"],
                r["error"],
            )
            for r in folders
        ),
        tuple(MessageIssue(*tuple(r)) for r in issues),
    )


def message_history(
    store: StateStore,
    source: str,
    folder: str,
    uid: int,
    *,
    key: str | None = None,
    uidvalidity: int | None = None,
) -> tuple[MessageAttempt, ...]:
    """Every recorded attempt on one message (``folder`` as shown: the source path), oldest first.

    ``key`` and ``uidvalidity`` (from ``MessageIssue``) pin the message exactly and make this an index
    lookup, cheap enough to repeat on every poll (``uid`` is then not needed); without a key the UID is
    looked up in the folder's ledger rows.
    """
    where = ["mb.source = ?", "f.source_path = ?"]
    params: list[object] = [source, folder]
    if key is None:
        # The ledger row by its UID first (one pass over the folder's rows), then its attempts.
        joined = (
            "messages m JOIN message_attempts a ON a.folder_id = m.folder_id AND a.uidvalidity = m.uidvalidity "
            "AND a.src_key = m.src_key JOIN folders f ON f.id = m.folder_id"
        )
        where += ["m.src_uid = ?", "m.status != 'superseded'"]
        params.append(uid)
    else:
        joined = "message_attempts a JOIN folders f ON f.id = a.folder_id"
        where.append("a.src_key = ?")
        params.append(key)
    if uidvalidity is not None:
        where.append("a.uidvalidity = ?")
        params.append(uidvalidity)
    rows = store.query(
        f"SELECT a.run_id, a.at, a.status, a.reason FROM {joined} JOIN mailboxes mb ON mb.id = f.mailbox_id "
        f"WHERE {' AND '.join(where)} ORDER BY a.id",
        params,
    )
    return tuple(MessageAttempt(r["run_id"], float(r["at"]), r["status"], r["reason"]) for r in rows)


@dataclass(frozen=True, slots=True)
class FindingRow:
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


@dataclass(frozen=True, slots=True)
class CheckRow:
    check_id: str
    category: str
    state: str
    reason: str


def readiness_detail(store: StateStore) -> tuple[tuple[FindingRow, ...], tuple[CheckRow, ...]]:
    """Every finding of the last readiness run (worst first) and the checks that didn't run."""
    last = store.query("SELECT id FROM check_runs ORDER BY id DESC LIMIT 1")
    if not last:
        return (), ()
    run_id = int(last[0]["id"])
    order = "CASE f.severity WHEN 'blocker' THEN 0 WHEN 'warning' THEN 1 WHEN 'info' THEN 2 ELSE 3 END"
    findings = store.query(
        "SELECT f.check_id, r.category, f.severity, f.object_type, f.object_id, f.title, f.observed, f.expected, "
        "f.evidence, f.remediation, f.waiver, f.fingerprint FROM findings f JOIN check_results r "
        f"ON r.run_id = f.run_id AND r.check_id = f.check_id WHERE f.run_id = ? ORDER BY {order}, f.check_id, "
        "f.object_id",
        (run_id,),
    )
    checks = store.query(
        "SELECT check_id, category, state, reason FROM check_results WHERE run_id = ? AND state != 'ok' "
        "ORDER BY check_id",
        (run_id,),
    )
    return (
        tuple(
            FindingRow(
                r["check_id"],
                r["category"],
                r["severity"],
                r["object_type"],
                r["object_id"],
                r["title"],
                r["observed"] or "",
                r["expected"] or "",
                r["evidence"] or "",
                r["remediation"] or "",
                r["waiver"],
                r["fingerprint"],
            )
            for r in findings
        ),
        tuple(CheckRow(r["check_id"], r["category"], r["state"], r["reason"] or "") for r in checks),
    )

"""Immutable snapshots of the state store, for the cockpit (and any other viewer).

The cockpit never talks to the runner: it reads these, a few times a second, from the same SQLite
file (WAL lets readers and the writer work at once), and sends requests through ``controls``.
``take`` reads only per-mailbox counters (kept by the engine), never the per-message ledger, so it
stays cheap with tens of thousands of mailboxes; ``mailbox_detail`` reads the ledger of one mailbox.
"""

from __future__ import annotations

import sqlite3
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

    def mailbox(self, source: str) -> MailboxRow | None:
        return next((m for m in self.mailboxes if m.source == source), None)


def take(store: StateStore, plan: Plan, *, events: int = 200) -> Snapshot:
    planned = {m.source: m for m in plan.mailboxes}
    rows = {
        r["source"]: r
        for r in store.query(
            "SELECT source, target, wave, state, messages_total, messages_done, bytes_total, bytes_done, failed, "
            "skipped, current_folder, error, error_kind, updated FROM mailboxes"
        )
    }
    mailboxes: list[MailboxRow] = []
    for source, entry in planned.items():
        r = rows.get(source)
        if r is None:  # planned, never touched by a run
            mailboxes.append(
                MailboxRow(
                    source, entry.target, entry.wave, "pending", 0, 0, 0, 0, 0, 0, None, None, None, None
                )
            )
            continue
        mailboxes.append(MailboxRow(
            source, r["target"], entry.wave, r["state"], r["messages_total"], r["messages_done"], r["bytes_total"],
            r["bytes_done"], r["failed"], r["skipped"], r["current_folder"], r["error"], r["error_kind"],
            r["updated"],
        ))  # fmt: skip
    runs = {r["wave"]: r for r in store.query("SELECT wave, status FROM runs ORDER BY id")}
    waves = tuple(
        _wave(name, [m for m in mailboxes if m.wave == name], runs.get(name)) for name in plan.waves
    )
    tail = store.query(
        "SELECT id, ts, level, kind, mailbox, folder, message FROM events ORDER BY id DESC LIMIT ?", (events,)
    )
    return Snapshot(
        taken=time.monotonic(),
        waves=waves,
        mailboxes=tuple(mailboxes),
        readiness=_readiness(store),
        events=tuple(Event(*tuple(r)) for r in reversed(tail)),
        messages_done=sum(m.messages_done for m in mailboxes),
        bytes_done=sum(m.bytes_done for m in mailboxes),
    )


def _wave(name: str, rows: list[MailboxRow], last_run: sqlite3.Row | None) -> WaveSummary:
    status = last_run["status"] if last_run is not None else None
    return WaveSummary(
        name=name,
        mailboxes=len(rows),
        states=dict(Counter(m.state for m in rows)),
        messages_total=sum(m.messages_total for m in rows),
        messages_done=sum(m.messages_done for m in rows),
        bytes_done=sum(m.bytes_done for m in rows),
        failed=sum(m.failed for m in rows),
        skipped=sum(m.skipped for m in rows),
        running=status == "running",
        last_run_status=status,
    )


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
    copied: int
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


@dataclass(frozen=True, slots=True)
class MailboxDetail:
    source: str
    folders: tuple[FolderDetail, ...] = ()
    issues: tuple[MessageIssue, ...] = field(default_factory=tuple)


def mailbox_detail(store: StateStore, source: str) -> MailboxDetail:
    """Folders with their ledger counts, and every message not copied with its reason."""
    folders = store.query(
        "SELECT f.id, f.source_path, f.target_name, f.messages, f.excluded, f.error, "
        "COALESCE(SUM(m.status = 'copied'), 0) AS copied, COALESCE(SUM(m.status = 'skipped'), 0) AS skipped, "
        "COALESCE(SUM(m.status = 'failed'), 0) AS failed, COALESCE(SUM(m.status = 'pending'), 0) AS pending "
        "FROM folders f JOIN mailboxes mb ON mb.id = f.mailbox_id LEFT JOIN messages m ON m.folder_id = f.id "
        "WHERE mb.source = ? GROUP BY f.id ORDER BY f.source_path",
        (source,),
    )
    issues = store.query(
        "SELECT f.source_path, m.src_uid, m.size, m.internaldate, m.status, m.reason, m.attempts FROM messages m "
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
                r["copied"],
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

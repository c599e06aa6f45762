"""The proxy's login journal and live session counts in the real state store: written in batches off
the event loop, bounded, read back by user, counted over a time range, and upgraded into old stores."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from runners.proxy.contracts import DecidedBy, LoginEvent, Outcome, Route, Service
from runners.proxy.journal import JournalObserver, login_row
from runners.proxy.sessions_publisher import SessionsPublisher
from runners.proxy.store_writer import StoreWriter
from runners.state.proxy_rows import JournalLimits, LoginRow
from runners.state.store import StateStore

V1_DUMP = Path(__file__).parent / "stores" / "state-v1.sql"
PROXY_TABLES = {"proxy_logins", "proxy_sessions", "captured_credentials", "login_queue"}
#: Never let the writer's own clock decide a batch: tests flush explicitly.
NEVER = 3600.0
#: Logins of the tests happen about now (the journal drops what is older than its age bound).
NOW = datetime.now(UTC).timestamp()


def _route(user: str, backend: str = "legacy") -> Route:
    suffix = "@tenant.example" if backend == "target" else ""
    return Route(user, backend, user + suffix, DecidedBy.STORE, f"wave of {user}")


def _event(user: str, outcome: Outcome = Outcome.ACCEPTED, *, at: float, backend: str = "legacy",
           service: Service = Service.IMAP, detail: str = "") -> LoginEvent:  # fmt: skip
    return LoginEvent(service, "127.0.0.9", user, _route(user, backend), outcome, detail, at)


def _tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def test_a_login_row_carries_each_field_of_its_event_and_route_in_its_own_column() -> None:
    route = Route("alice", "target", "alice@tenant.example", DecidedBy.DIRECTORY, "mailHost says target")
    routed = LoginEvent(Service.POP3, "127.0.0.9", "Alice", route, Outcome.REJECTED, "-ERR [AUTH] no", 1234.5)
    assert login_row(routed) == LoginRow(
        ts=1234.5, service="pop3", client="127.0.0.9", login="Alice", user="alice", backend="target",
        backend_login="alice@tenant.example", decided_by="directory", reason="mailHost says target",
        outcome="rejected", detail="-ERR [AUTH] no",
    )  # fmt: skip
    # Refused before routing: the login as typed stands for the user, and no backend is named.
    refused = LoginEvent(Service.IMAP, "127.0.0.9", "mallory", None, Outcome.BLOCKED, "locked out", 99.0)
    assert login_row(refused) == LoginRow(
        ts=99.0, service="imap", client="127.0.0.9", login="mallory", user="mallory", backend=None,
        backend_login=None, decided_by=None, reason=None, outcome="blocked", detail="locked out",
    )  # fmt: skip


def test_an_old_store_gains_the_proxy_tables_on_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(V1_DUMP.read_text())
    db.close()
    assert not PROXY_TABLES & _tables(path)
    # Read-only, a store from before the proxy reads as having seen no login.
    old = StateStore(path, read_only=True)
    assert old.proxy_logins("alice") == [] and old.proxy_sessions() == [] and old.queued_by_login() == {}
    assert old.captured_credential("alice", "legacy") is None
    old.close()
    StateStore(path).close()
    assert PROXY_TABLES <= _tables(path)
    assert StateStore(path).synced_folders("alice") is not None  # and what it held is still there


def test_a_store_with_the_old_login_index_gets_the_partial_one_and_triage_reads_use_the_indexes(
    tmp_path: Path,
) -> None:
    """Stores made before the partial index kept every row's typed login in ``proxy_logins_by_login``:
    on open it is replaced, and a user's logins are still found by either name, through the indexes."""
    path = tmp_path / "state.db"
    writer = StoreWriter(path, interval=NEVER)
    writer.start()
    writer.add_login(login_row(_event("alice", at=NOW)))
    typed = LoginEvent(
        Service.IMAP, "127.0.0.9", "Alice@Example.org", _route("alice"), Outcome.ACCEPTED, "", NOW + 1
    )
    writer.add_login(login_row(typed))
    assert writer.flush(timeout=60)
    writer.close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP INDEX proxy_logins_by_typed_login; CREATE INDEX proxy_logins_by_login ON proxy_logins (login, id);"
    )
    db.close()

    store = StateStore(path)
    indexes = {
        r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE tbl_name = 'proxy_logins'")
    }
    assert "proxy_logins_by_typed_login" in indexes and "proxy_logins_by_login" not in indexes
    ran: list[str] = []
    db = store._backend.connection()
    assert isinstance(db, sqlite3.Connection)
    db.set_trace_callback(ran.append)
    assert [r.login for r in store.proxy_logins("alice")] == ["Alice@Example.org", "alice"]
    assert [r.user for r in store.proxy_logins("Alice@Example.org")] == ["alice"]
    db.set_trace_callback(None)
    plan = " ".join(r["detail"] for r in store.query(f"EXPLAIN QUERY PLAN {ran[0]}"))
    assert "proxy_logins_by_user (user_name=?)" in plan and "proxy_logins_by_typed_login (login=?)" in plan, (
        plan
    )
    assert "SCAN" not in plan, plan
    store.close()


def test_logins_are_written_in_one_transaction_per_batch_and_read_back_newest_first(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "state.db", interval=NEVER)
    store = writer.start()
    journal = JournalObserver(writer)

    async def logins() -> None:
        for i in range(300):
            await journal.login_finished(_event(f"user{i % 30}", at=NOW + i), None)
        await journal.login_finished(
            _event(
                "alice",
                Outcome.REJECTED,
                at=NOW + 1000,
                detail="NO [AUTHENTICATIONFAILED] Authentication failed.",
            ),
            None,
        )
        await journal.login_finished(
            _event("alice", at=NOW + 1001, backend="target", service=Service.POP3), None
        )

    asyncio.run(logins())
    assert writer.flush(timeout=60)
    assert writer.batches == 1  # 302 logins, one transaction
    assert len(store.query("SELECT id FROM proxy_logins")) == 302

    last, first = store.proxy_logins("alice", limit=2)
    assert (last.backend, last.backend_login, last.service, last.outcome) == (
        "target", "alice@tenant.example", "pop3", "accepted"
    )  # fmt: skip
    assert (first.outcome, first.detail, first.client, first.decided_by) == (
        "rejected", "NO [AUTHENTICATIONFAILED] Authentication failed.", "127.0.0.9", "store"
    )  # fmt: skip
    (failure,) = store.proxy_failures(since=0)
    assert failure.user == "alice" and failure.detail.startswith("NO [AUTHENTICATIONFAILED]")
    counters = {
        (c.backend, c.service, c.outcome): c.count for c in store.proxy_login_counters(NOW, NOW + 100)
    }
    assert counters == {("legacy", "imap", "accepted"): 100}
    writer.close()


def test_the_journal_stays_bounded_per_user_by_age_and_in_total(tmp_path: Path) -> None:
    limits = JournalLimits(per_user=5, max_age_days=1.0, total=40)
    writer = StoreWriter(tmp_path / "state.db", interval=NEVER, limits=limits)
    store = writer.start()
    journal = JournalObserver(writer)
    now = NOW

    async def logins() -> None:
        for i in range(20):
            await journal.login_finished(_event("alice", at=now - 3 * 86400 + i), None)  # three days old
        for i in range(60):
            await journal.login_finished(_event(f"probe{i}", Outcome.BLOCKED, at=now + i), None)

    asyncio.run(logins())
    assert writer.flush(timeout=60)
    assert len(store.proxy_logins("alice", limit=100)) == 5  # per user, at every batch
    store.prune_proxy_journal(limits, now=now + 100)
    assert store.proxy_logins("alice") == []  # older than a day
    assert len(store.query("SELECT id FROM proxy_logins")) == 40  # and no more than the total
    writer.close()


def test_a_large_per_user_bound_is_cut_a_tenth_late_never_more(tmp_path: Path) -> None:
    # At 100 per user the cut waits for 10 new logins of that user (not a query per user on every
    # batch); the journal holds fewer than 110 of them.
    limits = JournalLimits(per_user=100, max_age_days=1.0, total=100_000)
    writer = StoreWriter(tmp_path / "state.db", interval=NEVER, limits=limits)
    store = writer.start()
    journal = JournalObserver(writer)
    held = []
    for i in range(135):
        asyncio.run(journal.login_finished(_event("alice", at=NOW + i), None))
        assert writer.flush(timeout=60)  # one batch per login: the worst case for the bound
        held.append(len(store.proxy_logins("alice", limit=1000)))
    assert max(held) == 109 and held[:100] == list(range(1, 101))
    assert min(held[100:]) == 100  # cut back to the bound, the newest kept
    newest = store.proxy_logins("alice", limit=1)[0]
    assert newest.ts == NOW + 134
    writer.close()


def test_a_proxy_publishes_its_sessions_and_takes_them_away_when_it_stops(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "state.db", interval=NEVER)
    store = writer.start()
    open_now = {(Service.IMAP, "legacy"): 3, (Service.IMAP, "target"): 1, (Service.POP3, "legacy"): 0}
    publisher = SessionsPublisher(writer, lambda: open_now)
    publisher.publish()
    assert writer.flush(timeout=60)
    seen = {(s.backend, s.service): s.sessions for s in store.proxy_sessions()}
    assert seen == {("legacy", "imap"): 3, ("target", "imap"): 1}
    open_now[(Service.IMAP, "legacy")] = 7
    publisher.publish()
    assert writer.flush(timeout=60)
    assert {(s.backend, s.service): s.sessions for s in store.proxy_sessions()}[("legacy", "imap")] == 7
    writer.close(publisher.proxy)
    assert StateStore(tmp_path / "state.db").proxy_sessions() == []


def test_counts_of_a_proxy_that_stopped_reporting_are_not_shown(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "state.db", interval=NEVER)
    store = writer.start()
    SessionsPublisher(writer, lambda: {(Service.IMAP, "legacy"): 2}).publish()
    assert writer.flush(timeout=60)
    (live,) = store.proxy_sessions()
    assert store.proxy_sessions(now=live.updated + 3600) == []
    writer.close()


def test_the_login_path_never_waits_for_a_store_that_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    writer = StoreWriter(path, interval=NEVER, max_pending=50)
    writer.start()
    blocker = StateStore(path)
    journal = JournalObserver(writer)
    with blocker.transaction():  # another process holds the write lock
        for i in range(80):
            asyncio.run(journal.login_finished(_event("alice", at=NOW + i), None))
        assert writer.dropped == 30  # bounded memory: the oldest went first
    assert writer.flush(timeout=120)
    assert len(blocker.proxy_logins("alice", limit=100)) == 50
    writer.close()

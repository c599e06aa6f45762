"""A store written by the version before opaque target ids opens, migrated, and keeps its meaning."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from runners.state.rows import Intent, MessageRef, SourceFacts
from runners.state.store import StateStore

V1_DUMP = Path(__file__).parent / "stores" / "state-v1.sql"


def _v1_store(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(V1_DUMP.read_text())
    db.close()
    return path


def test_a_v1_ledger_is_migrated_to_text_ids_on_open(tmp_path: Path) -> None:
    path = _v1_store(tmp_path)
    store = StateStore(path)
    folder = store.synced_folders("alice")
    assert folder is not None
    folder_id = folder["INBOX"].id

    ledger = store.ledger(folder_id, 5)
    assert (ledger["1"].status, ledger["1"].target_id, ledger["1"].recovery_mark) == ("copied", "40", None)
    assert (ledger["3"].status, ledger["3"].reason) == ("failed", "NO [LIMIT] too big")
    (pending,) = store.pending(folder_id)
    assert (pending.ref.src_key, pending.sha256, pending.recovery_mark) == ("2", b"b" * 32, "41")
    assert store.mapped_target_ids(1, "INBOX") == {"40"}
    columns = {r["name"]: r["type"] for r in store.query("PRAGMA table_info(messages)")}
    assert columns["target_id"] == "TEXT" and columns["recovery_mark"] == "TEXT"
    assert "target_uid" not in columns and "floor_uid" not in columns
    # The index and the attempt history came through; opening again changes nothing.
    assert store.query("SELECT name FROM sqlite_master WHERE name = 'messages_not_copied'")
    assert not store.query("SELECT name FROM sqlite_master WHERE name = 'messages_status'")
    assert len(store.query("SELECT * FROM message_attempts")) == 1
    store.close()
    again = StateStore(path)
    assert again.ledger(folder_id, 5) == ledger
    again.close()


def test_a_store_with_the_old_status_index_gets_the_partial_one(tmp_path: Path) -> None:
    """Stores made before the partial index kept every row in ``messages_status``: on open, it is
    replaced, and the ledger's reads of rows not copied go through the new one."""
    path = tmp_path / "state.db"
    store = StateStore(path)
    mailbox = store.upsert_mailbox("alice", "alice", "w")
    folder = store.folder(mailbox, "INBOX", "INBOX", "INBOX", None).id
    store.close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP INDEX messages_not_copied; CREATE INDEX messages_status ON messages (status, folder_id);"
    )
    db.close()

    store = StateStore(path)
    indexes = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE tbl_name = 'messages'")}
    assert "messages_not_copied" in indexes and "messages_status" not in indexes
    # The reads of a folder's open work find it in the index, not by a pass over the folder's rows
    # (a delta pass asks it of every unchanged folder): the store's own SQL, as it runs it.
    ran: list[str] = []
    db = store._backend.connection()
    assert isinstance(db, sqlite3.Connection)
    db.set_trace_callback(ran.append)
    assert not store.folder_needs_work(folder)
    assert store.failed_in_run(folder, 5, 1) == []
    assert store.pending(folder) == []  # each changed folder's pass asks it
    assert store.superseded_copies(folder, "INBOX") == []
    db.set_trace_callback(None)
    # folder_needs_work and pending also ask for the folder's batch intents (a few rows: no index).
    ran = [sql for sql in ran if "FROM batch_intents" not in sql]
    assert len(ran) == 4
    for sql in ran:
        plan = " ".join(r["detail"] for r in store.query(f"EXPLAIN QUERY PLAN {sql}"))
        assert "messages_not_copied" in plan, plan
    store.close()


def test_a_store_from_before_batch_intents_reads_the_same_when_opened_read_only(tmp_path: Path) -> None:
    """A store no version with batch intents has opened yet has no table for them: opened read-only
    (the cockpit, verify), its ledger and counts read as before, its pending rows pending."""
    path = tmp_path / "state.db"
    store = StateStore(path)
    mailbox = store.upsert_mailbox("alice", "alice", "w")
    folder = store.folder(mailbox, "INBOX", "INBOX", "INBOX", None).id
    ref = MessageRef(folder, 5, "1")
    store.record_intents([Intent(ref, SourceFacts(1, 10, None, ""), b"x" * 32, "INBOX", "3", 1)])
    store.close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE batch_intents;")
    db.close()

    seen = StateStore(path, read_only=True)
    assert not seen.keeps_batch_intents()
    assert seen.ledger(folder, 5)["1"].status == "pending"
    assert seen.folder_needs_work(folder)
    assert [(f.pending, f.copied) for f in seen.mailbox_detail("alice").folders] == [(1, 0)]
    assert [i.status for i in seen.mailbox_detail("alice").issues] == ["pending"]
    assert [r.pending for r in seen.mailbox_ledger_counts(None)] == [1]
    seen.close()

"""The state store: every run, mailbox, folder and message the engine has touched, and what the
cockpit and the checks keep beside them. It is the only place SQL is written; callers get typed rows.

``StateStore`` is assembled from one module per job (``runs``, ``controls``, ``check_history``,
``survey``, ``mailbox_reads``); the mailboxes, folders, the message ledger and events are here. The
database sits behind ``runners.state.backend`` (SQLite today: WAL with ``synchronous=FULL``, so a
committed ledger row survives ``kill -9`` and power loss; writes are batched per APPEND batch, which
keeps the fsync cost per message small). One connection per thread; every write is its own short
transaction. Failures raise ``StoreError`` (``runners.state.errors``), with the path and the cause.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.model import FolderState
from runners.safe_text import safe, safe_or_none
from runners.state.audit import AuditMixin
from runners.state.backend import Backend, Connection, SqliteBackend, schema_text
from runners.state.captured import CapturedMixin
from runners.state.check_history import CheckHistoryMixin
from runners.state.controls import ControlsMixin
from runners.state.fleet_hosts import FleetHostsMixin
from runners.state.leases import LeasesMixin, lease_expired
from runners.state.mailbox_reads import MailboxReadsMixin
from runners.state.pacing import PacingMixin
from runners.state.proxy_reads import ProxyReadsMixin
from runners.state.proxy_writes import ProxyWritesMixin
from runners.state.rows import (
    BatchIntent,
    EarlierCopy,
    FailedMessage,
    Intent,
    Matched,
    MessageRef,
    Outcome,
    PendingIntent,
    Sent,
    SentBatch,
    SourceFacts,
    SyncedFolder,
    Unsent,
    pack_sent,
    unpack_sent,
)
from runners.state.runs import RunsMixin
from runners.state.server_slots import ServerSlotsMixin
from runners.state.statuses import NOT_COPIED, MessageStatus, not_copied_source
from runners.state.survey import SurveyMixin
from runners.state.wave_steps import WaveStepsMixin

SCHEMA_VERSION = "1"
#: A runner that has not written for this long is presumed dead and its mailboxes may be taken over.
LEASE_SECONDS = 120.0
#: Ledger outcomes that are kept in the attempt history (``message_attempts``).
_IN_HISTORY = frozenset({"failed", "skipped"})
#: Keys per ``IN (...)`` of a ledger look-up: far below every backend's limit on parameters.
_KEYS_PER_QUERY = 900
#: Columns added since the first version: a store made earlier gets them on open, with their defaults
#: (SQLite can't add them in CREATE TABLE IF NOT EXISTS).
_ADDED_COLUMNS = {
    "mailboxes": (
        ("failed", "INTEGER NOT NULL DEFAULT 0"),
        ("skipped", "INTEGER NOT NULL DEFAULT 0"),
        ("current_folder", "TEXT"),
        ("target_layout", "TEXT"),
        ("lease_token", "INTEGER NOT NULL DEFAULT 0"),
    ),
    "folders": (("bytes", "INTEGER"),),
    "messages": (("sent_size", "INTEGER"),),
    "check_runs": (("operator", "TEXT"),),
    "runs": (("operator", "TEXT"), ("controls_from", "INTEGER")),
}


#: The reason of a row matched to an item already on the target (``record_matched``): after a
#: changed UIDVALIDITY, a keyed target's item keeps the key it was made with, not this row's.
MATCHED_NOTE = "found on the target by content"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    status: str
    flags: str
    target_id: str | None
    sha256: bytes | None
    size: int
    recovery_mark: str | None
    reason: str | None
    #: The run that last wrote the row (``ledger_for`` only): copied by an earlier run = already present.
    run_id: int | None = None
    #: The arrival date the copy was sent with (``ledger`` only: verification compares the target's).
    internaldate: str | None = None
    #: The bytes the source served, which an IMAP target was sent (``ledger`` only; None in rows
    #: written before it was kept): verification compares the target's size with it.
    sent_size: int | None = None


@dataclass(frozen=True, slots=True)
class MailboxProgress:
    messages_total: int
    bytes_total: int
    messages_done: int
    bytes_done: int
    failed: int
    skipped: int
    current_folder: str | None


@dataclass(frozen=True, slots=True)
class FolderRow:
    id: int
    #: What the last completed pass saw on the source (None before the first one).
    state: FolderState | None


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StateStore(
    RunsMixin,
    ControlsMixin,
    CheckHistoryMixin,
    SurveyMixin,
    MailboxReadsMixin,
    AuditMixin,
    PacingMixin,
    WaveStepsMixin,
    ProxyWritesMixin,
    ProxyReadsMixin,
    CapturedMixin,
    LeasesMixin,
    FleetHostsMixin,
    ServerSlotsMixin,
):
    def __init__(self, path: Path | str | Backend, *, read_only: bool = False) -> None:
        """Open (and create or upgrade) the store at ``path``, or the one behind a backend.

        ``read_only``: for an account that may read the state directory but not write it; nothing is
        created, upgraded or written (every write raises ``StoreError``).
        """
        if isinstance(path, Path | str):
            self._backend: Backend = SqliteBackend(path, read_only=read_only)
            self.path = Path(path)
        else:
            self._backend = path
            self.path = Path(path.location)
        self._sent_size_known: bool | None = None  # ``_keeps_sent_size``, asked once
        if self._backend.read_only:
            return
        self._backend.create_schema()
        self._add_missing_columns()
        self._migrate_ledger()
        if not self._read("SELECT 1 FROM meta WHERE key = 'schema'"):
            # Only a new store writes here: opening one must not wait for a runner's write lock.
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?) ON CONFLICT (key) DO NOTHING",
                    (SCHEMA_VERSION,),
                )

    def _add_missing_columns(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            have = self._backend.columns(table)
            for name, kind in columns:
                if name not in have:
                    self._backend.add_column(table, name, kind)

    # -- mailboxes -----------------------------------------------------------------------------

    def upsert_mailbox(self, source: str, target: str, wave: str) -> int:
        return self.upsert_mailboxes([(source, target, wave)])[0]

    def upsert_mailboxes(self, mailboxes: Sequence[tuple[str, str, str]]) -> list[int]:
        """Each (source, target, wave) recorded, in one transaction; their ids, in the same order."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO mailboxes (source, target, wave) VALUES (?,?,?) "
                "ON CONFLICT(source) DO UPDATE SET target = excluded.target, wave = excluded.wave",
                mailboxes,
            )
            return [
                int(db.execute("SELECT id FROM mailboxes WHERE source = ?", (source,)).fetchone()[0])
                for source, _, _ in mailboxes
            ]

    def save_target_layout(self, mailbox_id: int, layout: str) -> None:
        """Keep the target's folder layout (JSON) that this pass saw, for the next delta pass."""
        with self.transaction() as db:
            db.execute("UPDATE mailboxes SET target_layout = ? WHERE id = ?", (layout, mailbox_id))

    def target_layout(self, mailbox_id: int) -> str | None:
        rows = self._read("SELECT target_layout FROM mailboxes WHERE id = ?", (mailbox_id,))
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    def claim_mailbox(self, mailbox_id: int, run_id: int) -> str | None:
        """Take the mailbox for this process. Returns None, or who holds it when it's taken."""
        me = owner_id()
        now = time.time()
        with self.transaction() as db:
            owner, beat = db.execute(
                "SELECT owner, heartbeat FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if owner and owner != me and not lease_expired(owner, beat, now, LEASE_SECONDS):
                return str(owner)
            db.execute(
                "UPDATE mailboxes SET owner = ?, heartbeat = ?, state = 'running', run_id = ?, started = ?, "
                "updated = ?, error = NULL, error_kind = NULL, lease_token = lease_token + 1 WHERE id = ?",
                (me, now, run_id, now, now, mailbox_id),
            )
        return None

    def release_mailbox(
        self, mailbox_id: int, state: str, error: str | None = None, error_kind: str | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE mailboxes SET owner = NULL, state = ?, error = ?, error_kind = ?, updated = ? WHERE id = ?",
                (state, safe_or_none(error), error_kind, time.time(), mailbox_id),
            )

    def set_mailbox_state(self, mailbox_id: int, state: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE mailboxes SET state = ?, updated = ? WHERE id = ?", (state, time.time(), mailbox_id)
            )

    def mailbox_progress(self, mailbox_id: int, progress: MailboxProgress) -> None:
        """The live counters the cockpit and ``status`` show; also the runner's heartbeat."""
        with self.transaction() as db:
            _write_progress(db, mailbox_id, progress, time.time())

    # -- folders -------------------------------------------------------------------------------

    def folder(
        self, mailbox_id: int, source_name: str, source_path: str, target_name: str, excluded: str | None
    ) -> FolderRow:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO folders (mailbox_id, source_name, source_path, target_name, excluded, updated) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(mailbox_id, source_name) DO UPDATE SET "
                "source_path = excluded.source_path, target_name = excluded.target_name, "
                "excluded = excluded.excluded",
                (mailbox_id, source_name, source_path, target_name, excluded, time.time()),
            )
            row = db.execute(
                "SELECT id, uidvalidity, uidnext, messages, highestmodseq FROM folders "
                "WHERE mailbox_id = ? AND source_name = ?",
                (mailbox_id, source_name),
            ).fetchone()
        state = None if row[1] is None else FolderState(row[1], row[2], row[3], row[4])
        return FolderRow(row[0], state)

    def folder_done(self, folder_id: int, state: FolderState, source_bytes: int | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE folders SET uidvalidity = ?, uidnext = ?, messages = ?, bytes = COALESCE(?, bytes), "
                "highestmodseq = ?, error = NULL, updated = ? WHERE id = ?",
                (
                    state.uidvalidity,
                    state.uidnext,
                    state.messages,
                    source_bytes,
                    state.highestmodseq,
                    time.time(),
                    folder_id,
                ),
            )

    def folder_error(self, folder_id: int, error: str | None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE folders SET error = ?, updated = ? WHERE id = ?",
                (safe_or_none(error), time.time(), folder_id),
            )

    def folder_failed(self, folder_id: int) -> bool:
        """Did the last pass fail to open this folder (its error is recorded)?"""
        row = self._db().execute("SELECT error FROM folders WHERE id = ?", (folder_id,)).fetchone()
        return row is not None and row[0] is not None

    def folder_needs_work(self, folder_id: int) -> bool:
        """True when the ledger holds anything not finally copied (pending, failed, skipped), or a
        batch intent (its messages are pending)."""
        db = self._db()
        row = db.execute(
            "SELECT 1 FROM messages WHERE folder_id = ? AND status IN ('pending', 'failed', 'skipped') "
            f"AND {NOT_COPIED} LIMIT 1",
            (folder_id,),
        ).fetchone()
        return row is not None or (self.keeps_batch_intents() and _has_batch_intents(db, folder_id))

    def synced_folders(self, mailbox: str) -> dict[str, SyncedFolder] | None:
        """The folders a run recorded for the source mailbox ``mailbox``, by source name; None when
        no run has touched the mailbox."""
        rows = (
            self._db()
            .execute(
                "SELECT f.source_name, f.id, f.uidnext FROM mailboxes mb LEFT JOIN folders f ON f.mailbox_id = mb.id "
                "WHERE mb.source = ?",
                (mailbox,),
            )
            .fetchall()
        )
        if not rows:
            return None
        return {r[0]: SyncedFolder(r[1], r[2]) for r in rows if r[0] is not None}

    # -- the ledger ----------------------------------------------------------------------------

    def _migrate_ledger(self) -> None:
        """A store written before target ids were opaque keeps them as INTEGER ``target_uid`` and
        ``floor_uid``: rebuild its ledger with text ``target_id`` and ``recovery_mark`` (the IMAP
        adapter's UIDs and floors, now as decimal text), in one transaction."""
        columns = self._backend.columns("messages")
        if "target_uid" not in columns:
            return
        schema = schema_text()
        create = re.search(r"CREATE TABLE IF NOT EXISTS messages \(.*?\) WITHOUT ROWID;", schema, re.S)
        index = re.search(r"CREATE INDEX IF NOT EXISTS messages_not_copied [^;]*;", schema)
        assert create is not None and index is not None
        kept = (
            "folder_id, uidvalidity, src_key, src_uid, size, internaldate, flags, sha256, target_name, "
            "status, reason, attempts, run_id, updated"
        )
        with self.transaction() as db:
            db.execute("ALTER TABLE messages RENAME TO messages_v1")
            db.execute("DROP INDEX IF EXISTS messages_not_copied")  # the old table's, renamed with it
            db.execute(create.group(0))
            db.execute(index.group(0))
            db.execute(
                f"INSERT INTO messages ({kept}, target_id, recovery_mark) SELECT {kept}, "
                "CAST(target_uid AS TEXT), CAST(floor_uid AS TEXT) FROM messages_v1"
            )
            db.execute("DROP TABLE messages_v1")

    def ledger(self, folder_id: int, uidvalidity: int) -> dict[str, LedgerEntry]:
        # A store from before ``sent_size``, opened read-only (verify), was never given the column.
        sent_size = "sent_size" if self._keeps_sent_size() else "NULL"
        rows = self._db().execute(
            "SELECT src_key, status, flags, target_id, sha256, size, recovery_mark, reason, internaldate, "
            f"{sent_size} FROM messages WHERE folder_id = ? AND uidvalidity = ?",
            (folder_id, uidvalidity),
        )
        out = {
            r[0]: LedgerEntry(r[1], r[2], r[3], r[4], r[5], r[6], r[7], internaldate=r[8], sent_size=r[9])
            for r in rows
        }
        out.update(self._in_flight_entries(folder_id, uidvalidity))
        return out

    def _in_flight_entries(self, folder_id: int, uidvalidity: int) -> dict[str, LedgerEntry]:
        """The messages of the folder's batch intents, as pending ledger entries: they stand for the
        row each message will get (a row it has from before, say a failure, is being retried)."""
        out: dict[str, LedgerEntry] = {}
        if not self.keeps_batch_intents():
            return out
        for _, intent in _batch_intents(self._db(), folder_id, uidvalidity):
            for sent in intent.messages:
                facts = sent.source
                out[sent.src_key] = LedgerEntry(
                    MessageStatus.PENDING,
                    facts.flags,
                    None,
                    sent.sha256,
                    facts.size,
                    intent.recovery_mark,
                    None,
                    intent.run_id,
                    facts.internaldate,
                    sent.sent_size,
                )
        return out

    def _keeps_sent_size(self) -> bool:
        if self._sent_size_known is None:
            self._sent_size_known = "sent_size" in self._backend.columns("messages")
        return self._sent_size_known

    def ledger_for(self, folder_id: int, uidvalidity: int, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The ledger rows of these source keys only (one listed range of a folder), by the primary
        key: what a pass needs at a time, so its memory does not grow with the folder."""
        out: dict[str, LedgerEntry] = {}
        sql = (
            "SELECT src_key, status, flags, target_id, sha256, size, recovery_mark, reason, run_id FROM messages "
            "WHERE folder_id = ? AND uidvalidity = ? AND src_key IN ({})"
        )
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            rows = self._db().execute(
                sql.format(",".join("?" * len(chunk))), (folder_id, uidvalidity, *chunk)
            )
            for r in rows:
                out[r[0]] = LedgerEntry(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])
        if self.keeps_batch_intents() and _has_batch_intents(self._db(), folder_id):
            wanted = set(keys)
            out.update(
                (k, e) for k, e in self._in_flight_entries(folder_id, uidvalidity).items() if k in wanted
            )
        return out

    def supersede_other_uidvalidity(self, folder_id: int, uidvalidity: int) -> bool:
        """Void the claims of rows from an older UIDVALIDITY; True if any such rows exist.

        They stay (as 'superseded') until a pass under the new UIDVALIDITY completes, so that a
        crash in between still knows to match by content.
        """
        # Read first: nearly always there are none, and a write transaction costs an fsync. Only this
        # mailbox's runner (its lease) writes the folder's rows, so nothing comes in between.
        if not self._read(
            "SELECT 1 FROM messages WHERE folder_id = ? AND uidvalidity != ? LIMIT 1",
            (folder_id, uidvalidity),
        ):
            return False
        with self.transaction() as db:
            db.execute(
                "UPDATE messages SET status = 'superseded' WHERE folder_id = ? AND uidvalidity != ? "
                "AND status != 'superseded'",
                (folder_id, uidvalidity),
            )
            row = db.execute(
                "SELECT 1 FROM messages WHERE folder_id = ? AND uidvalidity != ? LIMIT 1",
                (folder_id, uidvalidity),
            ).fetchone()
        return row is not None

    def drop_superseded(self, folder_id: int) -> None:
        with self.transaction() as db:
            db.execute(
                "DELETE FROM message_attempts WHERE folder_id = ? AND (uidvalidity, src_key) IN "
                f"(SELECT uidvalidity, src_key FROM messages WHERE folder_id = ? AND status = 'superseded' AND {NOT_COPIED})",
                (folder_id, folder_id),
            )
            db.execute(
                f"DELETE FROM messages WHERE folder_id = ? AND status = 'superseded' AND {NOT_COPIED}",
                (folder_id,),
            )

    def record_intents(self, rows: Iterable[Intent]) -> None:
        """APPENDs about to be sent: each message becomes ``pending`` with the recovery mark."""
        self.record_batch((), rows)

    def record_results(self, rows: Iterable[Outcome]) -> None:
        """The outcomes of intents (after ``record_intents``).

        Failures also go to the attempt history, in the same transaction (a copied row writes nothing
        more: the history costs only what fails).
        """
        self.record_batch(rows, ())

    def record_batch(
        self,
        results: Iterable[Outcome],
        intents: Iterable[Intent],
        progress: tuple[int, MailboxProgress] | None = None,
    ) -> None:
        """The outcomes of the last batch's APPENDs, then the next batch's intents, in one transaction
        (one fsync where there were two): outcomes are still written only once the target answered,
        and intents before their APPEND is sent. ``progress``: a mailbox's live counters, when due,
        ride along (``mailbox_progress`` without a transaction of its own)."""
        now = time.time()
        results, intents = list(results), list(intents)
        with self.transaction() as db:
            if results:
                _write_results(db, results, now)
            if intents:
                _write_intents(db, intents, now)
            if progress is not None:
                _write_progress(db, *progress, now)

    def record_sent(
        self,
        done: Sequence[SentBatch],
        intent: BatchIntent | None = None,
        progress: tuple[int, MailboxProgress] | None = None,
    ) -> int | None:
        """The copy's ledger writes, one transaction a batch (one fsync): the rows of the messages of
        batches the target answered (``done``: each row written once, whole, and its batch intent
        deleted), then the next batch's ``intent``, before its APPEND is sent. Returns the intent's id.
        ``progress``: a mailbox's live counters, when due, ride along (as in ``record_batch``)."""
        now = time.time()
        with self.transaction() as db:
            for sent in done:
                _write_sent(db, sent, now)
            intent_id = (
                None if intent is None else self._backend.insert(db, _INTENT_SQL, _intent_row(intent, now))
            )
            if progress is not None:
                _write_progress(db, *progress, now)
        return intent_id

    def settle_pending(
        self, found: Sequence[tuple[PendingIntent, str]], lost: Sequence[PendingIntent], note: str
    ) -> None:
        """Intents the target's recovery settled (``pending``), in one transaction: each message found
        (with the target's id) is recorded as copied with ``note``; a lost one is forgotten, so the
        message is copied again; the batch intents they came from are deleted."""
        now = time.time()
        with self.transaction() as db:
            rows = [Outcome(p.ref, MessageStatus.COPIED, item, note) for p, item in found if p.sent is None]
            if rows:
                _write_results(db, rows, now)
            whole = [
                _sent_row(
                    (p.ref.folder_id, p.ref.uidvalidity, p.target_name, p.run_id),
                    p.sent,
                    "copied",
                    item,
                    note,
                    now,
                )
                for p, item in found
                if p.sent is not None
            ]
            if whole:
                db.executemany(_SENT_WITH_REASON, whole)
            forgotten = [_ref(p.ref) for p in lost if p.intent_id is None]
            if forgotten:
                db.executemany(_FORGET_SQL, forgotten)
            settled = {p.intent_id for p in (*(p for p, _ in found), *lost) if p.intent_id is not None}
            if settled:
                db.executemany("DELETE FROM batch_intents WHERE id = ?", [(i,) for i in sorted(settled)])

    def record_unsent(self, rows: Iterable[Unsent]) -> None:
        """Messages never appended (skipped or failed before APPEND).

        Each is also appended to the attempt history, in the same transaction.
        """
        now = time.time()
        rows = list(rows)
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO messages (folder_id, uidvalidity, src_key, src_uid, size, internaldate, flags, "
                "status, reason, run_id, attempts, updated) VALUES (?,?,?,?,?,?,?,?,?,?,1,?) "
                "ON CONFLICT(folder_id, uidvalidity, src_key) DO UPDATE SET status = excluded.status, "
                "reason = excluded.reason, size = excluded.size, run_id = excluded.run_id, "
                "attempts = messages.attempts + 1, updated = excluded.updated",
                [
                    (*_ref(r.ref), *_facts(r.source), r.status, safe_or_none(r.reason), r.run_id, now)
                    for r in rows
                ],
            )
            db.executemany(
                "INSERT INTO message_attempts (folder_id, uidvalidity, src_key, run_id, at, status, reason) "
                "VALUES (?,?,?,?,?,?,?)",
                [(*_ref(r.ref), r.run_id, now, r.status, safe_or_none(r.reason)) for r in rows],
            )

    def record_matched(self, rows: Iterable[Matched]) -> None:
        """Messages found already on the target by content (no APPEND needed). The row takes the
        source's flags as they are now: the copy was just given them (``copy_folder``), and verify
        holds the target's against the row's."""
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO messages (folder_id, uidvalidity, src_key, src_uid, size, internaldate, flags, "
                "sha256, target_name, target_id, run_id, status, reason, updated, sent_size) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,'copied',?,?,?) "
                "ON CONFLICT(folder_id, uidvalidity, src_key) DO UPDATE SET status = 'copied', "
                "target_id = excluded.target_id, target_name = excluded.target_name, sha256 = excluded.sha256, "
                "flags = excluded.flags, reason = excluded.reason, recovery_mark = NULL, updated = excluded.updated, "
                "sent_size = excluded.sent_size",
                [
                    (
                        *_ref(r.ref),
                        *_facts(r.source),
                        r.sha256,
                        r.target_name,
                        r.target_id,
                        r.run_id,
                        MATCHED_NOTE,
                        now,
                        r.sent_size,
                    )
                    for r in rows
                ],
            )

    def forget_pending(self, rows: Iterable[MessageRef]) -> None:
        """Drop intents whose APPEND never landed, so the message is copied again."""
        with self.transaction() as db:
            db.executemany(_FORGET_SQL, [_ref(r) for r in rows])

    def waive_message(self, mailbox: str, folder: str, uid: int, reason: str, who: str) -> int:
        """An operator's decision not to copy a failed or skipped message; reruns leave it alone.

        Returns how many ledger rows it applied to (0 when nothing failed there). The decision joins
        the message's attempt history.
        """
        where = (
            f"WHERE src_uid = ? AND status IN ('failed', 'skipped') AND {NOT_COPIED} AND folder_id IN (SELECT f.id FROM folders f "
            "JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE mb.source = ? AND f.source_path = ?)"
        )
        text, now = f"not copied, decided by {who}: {reason}", time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO message_attempts (folder_id, uidvalidity, src_key, run_id, at, status, reason) "
                f"SELECT folder_id, uidvalidity, src_key, NULL, ?, 'waived', ? FROM messages {where}",
                (now, text, uid, mailbox, folder),
            )
            cur = db.execute(
                f"UPDATE messages SET status = 'waived', reason = ?, updated = ? {where}",
                (text, now, uid, mailbox, folder),
            )
            return cur.rowcount

    def update_flags(self, folder_id: int, uidvalidity: int, rows: Iterable[tuple[str, str]]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE messages SET flags = ?, updated = ? WHERE folder_id = ? AND uidvalidity = ? AND src_key = ?",
                [(flags, time.time(), folder_id, uidvalidity, key) for key, flags in rows],
            )

    def pending(self, folder_id: int) -> list[PendingIntent]:
        """The folder's messages whose APPEND may or may not have landed: those of its batch intents,
        and pending rows (written per message by versions before the batch intents)."""
        db = self._db()
        rows = db.execute(
            "SELECT uidvalidity, src_key, sha256, target_name, recovery_mark, run_id "
            f"FROM {not_copied_source(self._backend.dialect)} "
            f"WHERE folder_id = ? AND status = 'pending' AND {NOT_COPIED}",
            (folder_id,),
        )
        out = [PendingIntent(MessageRef(folder_id, r[0], r[1]), r[2], r[3], r[4], r[5]) for r in rows]
        for intent_id, intent in _batch_intents(db, folder_id):
            out.extend(
                PendingIntent(
                    MessageRef(folder_id, intent.uidvalidity, sent.src_key),
                    sent.sha256,
                    intent.target_name,
                    intent.recovery_mark,
                    intent.run_id,
                    intent_id,
                    sent,
                )
                for sent in intent.messages
            )
        return out

    def mapped_target_ids(self, mailbox_id: int, target_name: str) -> set[str]:
        """Target items the ledger maps to a copied message of this mailbox's folder ``target_name``."""
        rows = self._db().execute(
            "SELECT m.target_id FROM messages m JOIN folders f ON f.id = m.folder_id "
            "WHERE f.mailbox_id = ? AND m.target_name = ? AND m.status = 'copied' AND m.target_id IS NOT NULL",
            (mailbox_id, target_name),
        )
        return {r[0] for r in rows}

    def superseded_copies(self, folder_id: int, target_name: str) -> list[EarlierCopy]:
        """Superseded rows of the folder that had a copy in target folder ``target_name`` (a target
        id and the source bytes' SHA-256), in source UID order."""
        rows = self._db().execute(
            f"SELECT uidvalidity, src_key, sha256, target_id FROM {not_copied_source(self._backend.dialect)} "
            "WHERE folder_id = ? "
            f"AND status = 'superseded' AND {NOT_COPIED} AND target_name = ? AND target_id IS NOT NULL "
            "AND sha256 IS NOT NULL "
            "ORDER BY uidvalidity, src_uid",
            (folder_id, target_name),
        )
        return [EarlierCopy(MessageRef(folder_id, r[0], r[1]), bytes(r[2]), r[3]) for r in rows]

    def failed_in_run(self, folder_id: int, uidvalidity: int, run_id: int) -> list[FailedMessage]:
        """Messages of the folder that failed in this run, with the reason."""
        rows = self._db().execute(
            "SELECT src_uid, reason FROM messages WHERE folder_id = ? AND uidvalidity = ? AND status = 'failed' "
            f"AND {NOT_COPIED} AND run_id = ?",
            (folder_id, uidvalidity, run_id),
        )
        return [FailedMessage(r[0], r[1] or "") for r in rows]

    # -- events --------------------------------------------------------------------------------

    def event(
        self,
        run_id: int | None,
        level: str,
        kind: str,
        message: str,
        mailbox: str | None = None,
        folder: str | None = None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO events (ts, run_id, mailbox, folder, level, kind, message) VALUES (?,?,?,?,?,?,?)",
                (time.time(), run_id, mailbox, safe_or_none(folder), level, kind, safe(message)),
            )


def _ref(ref: MessageRef) -> tuple[int, int, str]:
    return ref.folder_id, ref.uidvalidity, ref.src_key


def _facts(facts: SourceFacts) -> tuple[int, int, str | None, str]:
    return facts.src_uid, facts.size, facts.internaldate, facts.flags


def _write_progress(db: Connection, mailbox_id: int, progress: MailboxProgress, now: float) -> None:
    db.execute(
        "UPDATE mailboxes SET messages_total = ?, bytes_total = ?, messages_done = ?, bytes_done = ?, "
        "failed = ?, skipped = ?, current_folder = ?, heartbeat = ?, updated = ? WHERE id = ?",
        (
            progress.messages_total,
            progress.bytes_total,
            progress.messages_done,
            progress.bytes_done,
            progress.failed,
            progress.skipped,
            progress.current_folder,
            now,
            now,
            mailbox_id,
        ),
    )


def _write_intents(db: Connection, rows: list[Intent], now: float) -> None:
    db.executemany(
        "INSERT INTO messages (folder_id, uidvalidity, src_key, src_uid, size, internaldate, flags, "
        "sha256, target_name, recovery_mark, run_id, status, attempts, updated, sent_size) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,'pending',1,?,?) "
        "ON CONFLICT(folder_id, uidvalidity, src_key) DO UPDATE SET status = 'pending', "
        "sha256 = excluded.sha256, size = excluded.size, flags = excluded.flags, internaldate = excluded.internaldate, "
        "sent_size = excluded.sent_size, "
        "target_name = excluded.target_name, recovery_mark = excluded.recovery_mark, reason = NULL, "
        "run_id = excluded.run_id, attempts = messages.attempts + 1, updated = excluded.updated",
        [
            # Spelt out, not through _ref and _facts: a row per message, the copy's hot path.
            (
                (ref := r.ref).folder_id,
                ref.uidvalidity,
                ref.src_key,
                (src := r.source).src_uid,
                src.size,
                src.internaldate,
                src.flags,
                bytearray(r.sha256),  # not bytes: see _write_results
                r.target_name,
                r.recovery_mark,
                r.run_id,
                now,
                r.sent_size,
            )
            for r in rows
        ],
    )


#: Python's sqlite3 binds a value of exactly int, float, str or bytearray as it is; any other (bytes,
#: None, a str subclass such as ``MessageStatus``) first goes through its adapter lookup, ~0.6 µs a
#: value (an AttributeError made and dropped each time). On the ledger's hot rows the statuses are
#: bound as plain str, digests as bytearray (the same BLOB) and a NULL reason as SQL's NULL.
_STATUS_TEXT: dict[str, str] = {status: status.value for status in MessageStatus}


_RESULT_SQL = (
    "UPDATE messages SET status = ?, target_id = ?, reason = {reason}, recovery_mark = NULL, updated = ? "
    "WHERE folder_id = ? AND uidvalidity = ? AND src_key = ?"
)
_RESULT_WITHOUT_REASON = _RESULT_SQL.format(reason="NULL")
_RESULT_WITH_REASON = _RESULT_SQL.format(reason="?")


def _result_rows(rows: list[Outcome], now: float, *, with_reason: bool) -> list[tuple[object, ...]]:
    """The parameters of ``_RESULT_SQL`` for each outcome, its reason (made safe) only ``with_reason``."""
    return [
        (
            _STATUS_TEXT.get(r.status, r.status),
            r.target_id,
            *((safe(r.reason or ""),) if with_reason else ()),
            now,
            (ref := r.ref).folder_id,
            ref.uidvalidity,
            ref.src_key,
        )
        for r in rows
    ]


def _write_results(db: Connection, rows: list[Outcome], now: float) -> None:
    # Rows without a reason (every copy) write SQL's NULL, not a bound None (see _STATUS_TEXT).
    copied = [r for r in rows if r.reason is None]
    if copied:
        db.executemany(_RESULT_WITHOUT_REASON, _result_rows(copied, now, with_reason=False))
    if len(copied) < len(rows):
        refused = [r for r in rows if r.reason is not None]
        db.executemany(_RESULT_WITH_REASON, _result_rows(refused, now, with_reason=True))
    failed = [(now, *_ref(r.ref)) for r in rows if r.status in _IN_HISTORY]
    if failed:
        db.executemany(_HISTORY_SQL, failed)


#: A failure's line in the attempt history, from its ledger row as just written.
_HISTORY_SQL = (
    "INSERT INTO message_attempts (folder_id, uidvalidity, src_key, run_id, at, status, reason) "
    "SELECT folder_id, uidvalidity, src_key, run_id, ?, status, reason FROM messages "
    "WHERE folder_id = ? AND uidvalidity = ? AND src_key = ?"
)


_FORGET_SQL = (
    "DELETE FROM messages WHERE folder_id = ? AND uidvalidity = ? AND src_key = ? AND status = 'pending'"
)

_INTENT_SQL = (
    "INSERT INTO batch_intents (folder_id, uidvalidity, target_name, recovery_mark, run_id, updated, carried, "
    "messages, digests) VALUES (?,?,?,?,?,?,?,?,?)"
)


def _intent_row(intent: BatchIntent, now: float) -> tuple[object, ...]:
    return (
        intent.folder_id,
        intent.uidvalidity,
        intent.target_name,
        intent.recovery_mark,
        intent.run_id,
        now,
        len(intent.messages),
        *pack_sent(intent.messages),
    )


def _batch_intents(
    db: Connection, folder_id: int, uidvalidity: int | None = None
) -> Iterator[tuple[int, BatchIntent]]:
    """The folder's batch intents (of one UIDVALIDITY, when given), oldest first, with their ids."""
    sql = (
        "SELECT id, uidvalidity, target_name, recovery_mark, run_id, messages, digests FROM batch_intents "
        "WHERE folder_id = ?"
    )
    params: tuple[int, ...] = (folder_id,)
    if uidvalidity is not None:
        sql, params = sql + " AND uidvalidity = ?", (folder_id, uidvalidity)
    for intent_id, validity, target_name, mark, run_id, packed, digests in db.execute(
        sql + " ORDER BY id", params
    ).fetchall():
        yield (
            int(intent_id),
            BatchIntent(folder_id, validity, target_name, mark, run_id, unpack_sent(packed, bytes(digests))),
        )


def _has_batch_intents(db: Connection, folder_id: int) -> bool:
    return (
        db.execute("SELECT 1 FROM batch_intents WHERE folder_id = ? LIMIT 1", (folder_id,)).fetchone()
        is not None
    )


#: A message's whole ledger row, written once the target answered (``record_sent``); its reason as SQL's
#: NULL for a copy (see _STATUS_TEXT). A row from before (a failure retried, a pending row of an older
#: version) is overwritten, its attempts counted on.
_SENT_SQL = (
    "INSERT INTO messages (folder_id, uidvalidity, src_key, src_uid, size, internaldate, flags, sha256, "
    "target_name, run_id, sent_size, status, target_id, reason, attempts, updated) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,{reason},1,?) "
    "ON CONFLICT(folder_id, uidvalidity, src_key) DO UPDATE SET status = excluded.status, "
    "target_id = excluded.target_id, reason = excluded.reason, sha256 = excluded.sha256, size = excluded.size, "
    "flags = excluded.flags, internaldate = excluded.internaldate, sent_size = excluded.sent_size, "
    "target_name = excluded.target_name, recovery_mark = NULL, run_id = excluded.run_id, "
    "attempts = messages.attempts + 1, updated = excluded.updated"
)
_SENT_WITHOUT_REASON = _SENT_SQL.format(reason="NULL")
_SENT_WITH_REASON = _SENT_SQL.format(reason="?")


def _sent_row(
    head: tuple[int, int, str, int | None],
    sent: Sent,
    status: str,
    target_id: str | None,
    reason: str | None,
    now: float,
) -> tuple[object, ...]:
    """The parameters of ``_SENT_SQL`` for one message of the batch ``head`` (folder, UIDVALIDITY,
    target folder, run); its reason, made safe, only when it has one."""
    facts = sent.source
    return (
        head[0],
        head[1],
        sent.src_key,
        facts.src_uid,
        facts.size,
        facts.internaldate,
        facts.flags,
        bytearray(sent.sha256),
        head[2],
        head[3],
        sent.sent_size,
        _STATUS_TEXT.get(status, status),
        target_id,
        *(() if reason is None else (safe(reason),)),
        now,
    )


def _write_sent(db: Connection, done: SentBatch, now: float) -> None:
    """One answered batch: each message's whole row, the failures' attempt history, the intent deleted."""
    batch = done.batch
    head = (batch.folder_id, batch.uidvalidity, batch.target_name, batch.run_id)
    copied: list[tuple[object, ...]] = []
    refused: list[tuple[object, ...]] = []
    for sent, (status, target_id, reason) in zip(batch.messages, done.results, strict=True):
        (copied if reason is None else refused).append(_sent_row(head, sent, status, target_id, reason, now))
    if copied:
        db.executemany(_SENT_WITHOUT_REASON, copied)
    if refused:
        db.executemany(_SENT_WITH_REASON, refused)
        failed = [
            (now, batch.folder_id, batch.uidvalidity, sent.src_key)
            for sent, (status, _, _) in zip(batch.messages, done.results, strict=True)
            if status in _IN_HISTORY
        ]
        if failed:
            db.executemany(_HISTORY_SQL, failed)
    db.execute("DELETE FROM batch_intents WHERE id = ?", (done.intent_id,))

"""The state store on PostgreSQL (``[state] url = "postgresql://..."``): one database that runners on
several hosts and cockpits anywhere share. The store's SQL is the same as on SQLite (``backend.py``
says which subset); this module is the rest:

* a connection per thread (psycopg 3), in autocommit mode, so that a read is never left "idle in
  transaction"; the store's ``?`` become ``%s`` (``pg_sql.placeholders``);
* write transactions serialized like SQLite's ``BEGIN IMMEDIATE`` by default (a transaction-scoped
  advisory lock), so that every read-then-write of the store keeps its meaning with many hosts;
  ``serialized=False`` for a transaction that takes its own row locks (``FOR UPDATE``);
* ``NUMERIC`` results (``SUM`` of a BIGINT) come back as ``int`` (or ``float``), as SQLite's do;
* a session that stops answering inside a transaction (a frozen or partitioned host) is ended by
  the server after ``IDLE_IN_TRANSACTION_SECONDS``, so its locks don't stop the fleet;
* read-only: the session is ``default_transaction_read_only``, and a database without the schema
  yet reads as empty (the tables made in the session's temporary schema);
* LISTEN/NOTIFY: ``wait_for_change`` returns when another session committed a change the cockpit
  shows (the triggers at the end of ``schema_pg.sql``).

Errors become ``StoreError`` with the URL as it may be shown (never its password).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from importlib import resources
from typing import Any

import psycopg
from psycopg.adapt import Buffer, Loader

from runners.state.backend import Connection, Cursor
from runners.state.errors import StoreError
from runners.state.pg_sql import placeholders, without_password

#: The advisory lock every serialized write transaction takes (any constant; "cutover" in ASCII).
WRITE_LOCK = 0x637574_6F766572
#: The lock that makes creating and upgrading the schema one host's job at a time.
SCHEMA_LOCK = WRITE_LOCK + 1
#: How long a write waits for another's lock (SQLite's busy timeout is the same).
LOCK_TIMEOUT_SECONDS = 60
#: A transaction left open this long by a client that went quiet is ended by the server.
IDLE_IN_TRANSACTION_SECONDS = 15
#: Where notifications of changes arrive (schema_pg.sql's triggers).
CHANNEL = "cutover_changes"
#: A read-only session over a database not created yet looks again this often.
_RECHECK_SECONDS = 1.0

#: What PostgreSQL's words mean for someone at the command line.
_HINTS = {
    "password authentication failed": "check [state] password (and the user in [state] url)",
    "no password supplied": "set [state] password (env:NAME or file:PATH) in the plan",
    "Connection refused": "is PostgreSQL running there, and listening on that address and port?",
    "does not exist": "create it (createdb), or fix [state] url",
    "permission denied": "this account may not do that: grant it, or use `--read-only` to look",
    "read-only transaction": "this session is read-only: nothing can be written from here",
    "could not translate host name": "check the host in [state] url",
    "timeout expired": "the server did not answer: check the address, the port and the firewall",
}


class _IntNumeric(Loader):
    """``NUMERIC`` as SQLite would give it: an ``int`` when whole (``SUM`` of BIGINT), else ``float``."""

    def load(self, data: Buffer) -> int | float:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class _Row(tuple[Any, ...]):
    """A row readable by position and by column name (``row["n"]``), as ``sqlite3.Row`` is."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _named_rows(cursor: psycopg.Cursor[Any]) -> Any:
    names = {c.name: i for i, c in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> _Row:
        row = _Row(values)
        row.names = names
        return row

    return make


class PgConnection:
    """A psycopg connection as the store uses one: ``?`` placeholders, errors as ``StoreError``."""

    def __init__(self, conn: psycopg.Connection[Any], backend: PostgresBackend) -> None:
        self.raw = conn
        self._backend = backend

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        try:
            return self.raw.execute(placeholders(sql), tuple(parameters))
        except psycopg.Error as exc:
            raise self._backend.error(exc) from exc

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self.raw.cursor()
        try:
            cursor.executemany(placeholders(sql), [tuple(p) for p in parameters])
        except psycopg.Error as exc:
            raise self._backend.error(exc) from exc
        return cursor


class PostgresBackend:
    """One PostgreSQL database behind the state store (see the module's docstring)."""

    dialect = "postgresql"
    notifies = True

    def __init__(
        self, url: str, password: str | None = None, *, read_only: bool = False, connect_timeout: int = 10
    ) -> None:
        self.url = url
        self.location = without_password(url)
        self.read_only = read_only
        self._password = password
        self._connect_timeout = connect_timeout
        self._local = threading.local()

    # -- connections -------------------------------------------------------------------------------

    def connection(self) -> Connection:
        return self._pg()

    def _pg(self) -> PgConnection:
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.raw.closed or conn.raw.broken or self._outdated()):
            self._drop_connection()
            conn = None
        if conn is None:
            conn = PgConnection(self._open(), self)
            self._local.conn = conn
            if self.read_only:
                self._read_only_schema(conn)
        return conn

    def _open(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A new session: autocommit (transactions are explicit), its timeouts, read-only when asked."""
        options = (
            f"-c lock_timeout={LOCK_TIMEOUT_SECONDS}s "
            f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_SECONDS}s"
        )
        if self.read_only:
            options += " -c default_transaction_read_only=on"
        try:
            conn = psycopg.connect(
                self.url,
                password=self._password,
                autocommit=autocommit,
                connect_timeout=self._connect_timeout,
                options=options,
                application_name="cutover",
            )
        except psycopg.Error as exc:
            raise self.error(exc) from exc
        conn.adapters.register_loader("numeric", _IntNumeric)
        return conn

    def _read_only_schema(self, conn: PgConnection) -> None:
        """A database nobody has created the store in reads as an empty store: the tables are made
        in this session's temporary schema (which a read-only session may not write either, so the
        session is opened writable for it, then set read-only)."""
        self._local.empty_since = 0.0
        if self._created(conn):
            return
        raw = conn.raw
        try:
            row = raw.execute("SELECT current_schema()").fetchone()
            self._local.home = str(row[0]) if row and row[0] else "public"
            raw.execute("SET default_transaction_read_only = off")
            raw.execute("SET search_path = pg_temp")
            raw.execute(_tables_only(schema_text()).encode())
            raw.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise self.error(exc) from exc
        self._local.empty_since = time.monotonic()

    def _outdated(self) -> bool:
        """A read-only session on an empty stand-in gives way once the store has been created."""
        since: float = getattr(self._local, "empty_since", 0.0)
        if not since or time.monotonic() - since < _RECHECK_SECONDS:
            return False
        self._local.empty_since = time.monotonic()
        conn: PgConnection = self._local.conn
        try:
            found = conn.raw.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'meta'",
                (self._local.home,),
            ).fetchone()
        except psycopg.Error:
            return True
        return found is not None

    def _created(self, conn: PgConnection) -> bool:
        try:
            row = conn.raw.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_name = 'meta'"
            ).fetchone()
            if row is None:
                return False
            return conn.raw.execute("SELECT 1 FROM meta WHERE key = 'schema'").fetchone() is not None
        except psycopg.Error as exc:
            raise self.error(exc) from exc

    def exists(self) -> bool:
        """Has a store been created in this database (its creator's last step is done)?"""
        conn = self._pg()
        return self._created(conn) and not getattr(self._local, "empty_since", 0.0)

    def close(self, *, writer: bool = True) -> None:
        # Every connection is a thread's own here: there is no writers' connection to keep or close.
        self._drop_connection()
        self._stop_listening()

    def _drop_connection(self) -> None:
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.raw.close()
            self._local.conn = None
            self._local.empty_since = 0.0

    # -- statements --------------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, serialized: bool = True) -> Iterator[Connection]:
        if self.read_only:
            raise StoreError(self.location, "opened read-only: nothing can be written from here")
        conn = self._pg()
        try:
            with conn.raw.transaction():
                if serialized:
                    conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield conn
        except psycopg.Error as exc:
            raise self.error(exc) from exc

    def insert(self, db: Connection, sql: str, params: Sequence[Any]) -> int:
        row = db.execute(sql + " RETURNING id", params).fetchone()
        return int(row[0])

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._pg().execute(sql, params)
        # A statement that returns no rows (ANALYZE, an UPDATE) reads as none, as on SQLite.
        return cursor.fetchall() if getattr(cursor, "description", None) is not None else []

    def inspect(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._pg()
        try:
            cursor = conn.raw.cursor(row_factory=_named_rows)
            cursor.execute(placeholders(sql), tuple(params))
            return cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            raise self.error(exc) from exc

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """``column`` is one of ``values``: the SQL and its one parameter (an array here)."""
        return f"{column} = ANY(?)", list(values)

    # -- schema ------------------------------------------------------------------------------------

    def create_schema(self) -> None:
        """CREATE ... IF NOT EXISTS under a lock: hosts that start together don't race for a name. A
        database whose schema is this very text (its digest in ``meta``) is left alone: replacing the
        triggers would lock every table against the fleet's writes, at every command's start."""
        text = schema_text()
        digest = hashlib.sha256(text.encode()).hexdigest()
        conn = self._pg()
        try:
            if self._schema_digest(conn) == digest:
                return
            with conn.raw.transaction():
                conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.raw.execute(text.encode())
                conn.raw.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_pg', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (digest,),
                )
        except psycopg.Error as exc:
            raise self.error(exc) from exc

    @staticmethod
    def _schema_digest(conn: PgConnection) -> str | None:
        """The digest of the schema text this database was last brought up to (None: not made yet)."""
        if conn.raw.execute("SELECT to_regclass('meta')").fetchone() in (None, (None,)):
            return None
        row = conn.raw.execute("SELECT value FROM meta WHERE key = 'schema_pg'").fetchone()
        return str(row[0]) if row else None

    def columns(self, table: str) -> set[str]:
        rows = self.read(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ?",
            (table,),
        )
        return {str(r[0]) for r in rows}

    def add_column(self, table: str, name: str, kind: str) -> None:
        """Add a column written in SQLite's words (``INTEGER NOT NULL DEFAULT 0``), once per database."""
        with self.transaction() as db:
            db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {column_type(kind)}")

    # -- notifications -----------------------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        """Block until another session commits a change the cockpit shows, or ``timeout`` passes;
        True when one came. The first call starts listening (on a session of its own) and returns at
        once, so that nothing committed between a caller's read and its wait is missed."""
        listener: psycopg.Connection[Any] | None = getattr(self._local, "listener", None)
        if listener is not None and (listener.closed or listener.broken):
            listener = None
        if listener is None:
            listener = self._open()
            try:
                listener.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error as exc:
                listener.close()
                raise self.error(exc) from exc
            self._local.listener = listener
            return True
        try:
            got = any(True for _ in listener.notifies(timeout=timeout, stop_after=1))
            if got:  # several may have come at once: one wake-up for all of them
                any(True for _ in listener.notifies(timeout=0.0))
            return got
        except psycopg.Error as exc:
            listener.close()
            self._local.listener = None
            raise self.error(exc) from exc

    def _stop_listening(self) -> None:
        listener: psycopg.Connection[Any] | None = getattr(self._local, "listener", None)
        if listener is not None:
            listener.close()
            self._local.listener = None

    # -- errors ------------------------------------------------------------------------------------

    def error(self, exc: BaseException) -> StoreError:
        """The store's error for a failure of PostgreSQL (or of the network to it)."""
        cause = " ".join(str(exc).split()) or type(exc).__name__
        if self._password:
            cause = cause.replace(self._password, "***")
        hint = next((h for words, h in _HINTS.items() if words in cause), "")
        return StoreError(self.location, cause, hint)


#: SQLite's column types in PostgreSQL's words (for columns added to an existing store).
_TYPES = (
    ("INTEGER", "BIGINT"),
    ("REAL", "DOUBLE PRECISION"),
    ("BLOB", "BYTEA"),
    ("TEXT", 'TEXT COLLATE "C"'),
)


def column_type(kind: str) -> str:
    """``INTEGER NOT NULL DEFAULT 0`` → ``BIGINT NOT NULL DEFAULT 0``: the type word only."""
    word, _, rest = kind.partition(" ")
    mapped = dict(_TYPES).get(word.upper(), word)
    return f"{mapped} {rest}".strip()


def schema_text() -> str:
    """The schema PostgreSQL creates (CREATE ... IF NOT EXISTS), as written in schema_pg.sql."""
    return resources.files("runners.state").joinpath("schema_pg.sql").read_text()


def _tables_only(schema: str) -> str:
    """The schema without its notification triggers (a read-only stand-in has no writer to notify)."""
    return schema.partition("CREATE OR REPLACE FUNCTION")[0]

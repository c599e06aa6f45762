"""Where the state store meets its database engine: every SQL dialect difference lives here.

The store's modules (``store.py``, ``runs.py``, ``controls.py``, ...) write their SQL once, in the
subset SQLite and PostgreSQL share: ``?`` placeholders; upserts as ``INSERT ... ON CONFLICT (...) DO
UPDATE`` or ``DO NOTHING``; ``CASE`` rather than summed booleans or two-argument ``MAX``. What can't be
written that way goes through a ``Backend``:

* opening a connection per thread, and its session settings (SQLite: PRAGMAs);
* a write transaction (SQLite: ``BEGIN IMMEDIATE``, which takes the write lock up front);
* the id of a row just inserted (SQLite: ``lastrowid``; PostgreSQL would add ``RETURNING id``);
* creating and upgrading the schema (SQLite: ``executescript`` of ``schema.sql``, ``PRAGMA table_info``);
* opening read-only, for an account that may read the state directory but not write it;
* turning the driver's errors into the store's one error, ``StoreError``.

* a list of values as one parameter (``in_values``: SQLite's ``json_each``, PostgreSQL's arrays);
* a column added to an existing store (``add_column``, in SQLite's words for the type);
* waiting for another process's change (``wait_for_change``: PostgreSQL's LISTEN; SQLite just waits).

The second backend, ``PostgresBackend`` (``pg_backend.py``, for many runner hosts), wraps psycopg's
connection so that ``?`` becomes ``%s`` and has its own schema file (``schema_pg.sql``); ``StateStore``
takes the backend, and ``runners.state.open.open_store`` picks it from the plan's ``[state]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote

from runners.state.errors import StoreError
from runners.state.private import private_dir, private_file


class Cursor(Protocol):
    """What the store uses of a DB-API cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the store uses of a DB-API connection (``?`` placeholders)."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class Backend(Protocol):
    """One database behind the state store. Connections are per thread; writes are short transactions."""

    #: Where the data lives (a file path, a URL without its password), for error messages.
    location: str
    read_only: bool
    #: "sqlite" or "postgresql": for the rare statement that must be spelled per engine.
    dialect: str
    #: Does ``wait_for_change`` hear of other processes' commits (else a viewer polls)?
    notifies: bool

    def connection(self) -> Connection:
        """This thread's connection, opened on first use."""
        ...

    def transaction(self, *, serialized: bool = True) -> AbstractContextManager[Connection]:
        """A write transaction: committed when the block ends, rolled back when it raises.

        ``serialized``: one write transaction at a time across every process (SQLite's only way;
        PostgreSQL takes a lock for it). ``False`` lets PostgreSQL run it beside others, for a
        transaction that locks the rows it depends on itself (``FOR UPDATE``)."""
        ...

    def insert(self, db: Connection, sql: str, params: Sequence[Any]) -> int:
        """Run one ``INSERT`` (written without ``RETURNING``) and return the new row's id."""
        ...

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query, as tuples in the order of its columns."""
        ...

    def inspect(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows readable by column name too (``row["n"]``): for tests and ad-hoc inspection only."""
        ...

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """SQL saying ``column`` is one of ``values``, with its one parameter (any number of values)."""
        ...

    def create_schema(self) -> None:
        """Create the tables and indexes that don't exist yet."""
        ...

    def columns(self, table: str) -> set[str]:
        """The names of a table's columns as the database has them now."""
        ...

    def add_column(self, table: str, name: str, kind: str) -> None:
        """Add a column to an existing table; ``kind`` in SQLite's words (``INTEGER NOT NULL DEFAULT 0``)."""
        ...

    def exists(self) -> bool:
        """Has a store been created there (anything has run)?"""
        ...

    def wait_for_change(self, timeout: float) -> bool:
        """Wait for another process to commit a change a viewer shows, at most ``timeout`` seconds;
        True when one came. False at once where the engine can't tell (SQLite): the caller polls."""
        ...

    def close(self, *, writer: bool = True) -> None:
        """Close this thread's connection (and what ``wait_for_change`` opened in it); with ``writer``,
        also the process's writers' connection where there is one (SQLite's), unless it is in use."""
        ...


#: What SQLite's words mean for someone at the command line.
_HINTS = {
    "file is not a database": "not a state store, or a damaged one: restore it from a backup or move it away",
    "database disk image is malformed": "the file is damaged: restore it from a backup or move it away",
    "database or disk is full": "free some space on its file system",
    "attempt to write a readonly database": "this account may not write there: fix the permissions, or "
    "use `--read-only` to look",
    "unable to open database file": "check that the state directory exists, is a directory and is writable",
}


#: Seconds a write waits for the file's lock (SQLite's busy timeout, and our own writers' queue).
WRITE_WAIT_SECONDS = 60.0
#: Between tries to open a database another process is recovering (``SqliteBackend._open``).
_OPEN_RETRY_SECONDS = 0.02
#: One writer at a time per database file in this process, queued on a lock: SQLite's own wait for
#: its write lock (the busy handler) polls, sleeping up to 100 ms between tries, so a lane whose
#: turn came could sleep on long after the lock was free. Other processes still meet the busy handler.
_writers: dict[str, threading.Lock] = {}
_writers_lock = threading.Lock()
#: Writers' connections a forked child inherited: kept, never closed (``SqliteBackend._writing``).
_inherited: list[sqlite3.Connection] = []


def _writer_lock(path: Path) -> threading.Lock:
    with _writers_lock:
        return _writers.setdefault(os.path.abspath(path), threading.Lock())


class SqliteBackend:
    """One SQLite file in WAL mode with ``synchronous=FULL``: a committed row survives ``kill -9``
    and power loss. Read-only, it opens the file with ``mode=ro`` and never writes, not even a PRAGMA."""

    dialect = "sqlite"
    notifies = False

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.read_only = read_only
        self._local = threading.local()
        self._writer = _writer_lock(self.path)
        #: The one connection every write transaction of this process uses, under ``_writer``: its page
        #: cache stays valid from one transaction to the next (a connection per thread re-read the
        #: pages each time another thread had written: 7,000 reads of the -wal a run of 12,000 messages).
        self._shared: sqlite3.Connection | None = None
        self._shared_pid = 0
        if not read_only:
            try:
                private_dir(self.path.parent)  # 0700 whatever the umask (runners.state.private)
            except OSError as exc:
                raise self.error(exc) from exc

    # -- connections -------------------------------------------------------------------------------

    def connection(self) -> Connection:
        return self._sqlite()

    def _sqlite(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and self.read_only and self._outdated():  # only a read-only one stands in
            db.close()
            db = None
        if db is None:
            try:
                db = self._open_read_only() if self.read_only else self._open()
            except (sqlite3.Error, OSError) as exc:
                raise self.error(exc) from exc
            self._local.db = db
        return db

    def _outdated(self) -> bool:
        """A read-only stand-in that must give way to the real thing: the store was created since
        (it read as empty), or a writer started since (it was read as a still file)."""
        mode = getattr(self._local, "mode", "")
        return (mode == "empty" and self.path.exists()) or (mode == "immutable" and self._wal_exists())

    def _open(self, *, shared: bool = False) -> sqlite3.Connection:
        private_file(self.path)  # 0600 before SQLite creates it: its -wal and -shm take its mode
        deadline = time.monotonic() + WRITE_WAIT_SECONDS
        while True:
            db = sqlite3.connect(
                self.path, timeout=WRITE_WAIT_SECONDS, isolation_level=None, check_same_thread=not shared
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                # Opened just after another process was killed (a proxy worker, a fleet runner),
                # SQLite answered "locked" at once, without its busy handler (most likely while its
                # write-ahead log was recovered): a replacement worker died at start. Try again, as
                # the handler would.
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(_OPEN_RETRY_SECONDS)
            except BaseException:
                db.close()
                raise

    def _open_read_only(self) -> sqlite3.Connection:
        """``mode=ro`` reads alongside a live writer (its ``-shm`` and ``-wal`` exist). With no writer,
        a reader that can't create ``-shm`` (a directory it may not write, a full disk) is refused by
        SQLite; then the file is complete on its own (the last writer checkpointed it and removed its
        ``-wal``) and is opened ``immutable``, until a ``-wal`` appears. A store not created yet reads
        as an empty one (nothing has run)."""
        self._local.mode = ""
        db = self._open_file_read_only() if self.path.exists() else None
        if db is not None and _created(db):
            return db
        if db is not None:
            db.close()  # a runner is creating it this very moment
        db = sqlite3.connect(":memory:", isolation_level=None)
        db.executescript(schema_text())
        self._local.mode = "empty"
        return db

    def _open_file_read_only(self) -> sqlite3.Connection:
        uri = "file:" + quote(str(self.path.absolute()))
        db = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=60.0, isolation_level=None)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
            if self._wal_exists():  # a writer is at work: its -wal must be read, not skipped
                raise
        except BaseException:
            db.close()
            raise
        db = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None)
        self._local.mode = "immutable"
        return db

    def _wal_exists(self) -> bool:
        """Does a ``-wal`` hold anything (an empty one, left by a writer that failed, holds nothing)?"""
        try:
            return os.path.getsize(f"{self.path}-wal") > 0
        except OSError:
            return False

    def close(self, *, writer: bool = True) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
            self._local.mode = ""
        # The writers' connection too, unless a transaction is using it (then it stays for the others).
        if writer and self._shared is not None and self._writer.acquire(blocking=False):
            try:
                shared, self._shared = self._shared, None
                if shared is not None and self._shared_pid == os.getpid():
                    shared.close()
                elif shared is not None:  # inherited through a fork: kept, as in _writing
                    _inherited.append(shared)
            finally:
                self._writer.release()

    def _writing(self) -> sqlite3.Connection:
        """The writers' connection (``_shared``), opened on first use; the caller holds ``_writer``."""
        db = self._shared
        if db is None or self._shared_pid != os.getpid():
            if db is not None:
                # Inherited through a fork: never closed here, closing it would drop the parent's locks.
                _inherited.append(db)
            db = self._open(shared=True)
            self._shared, self._shared_pid = db, os.getpid()
        elif db.in_transaction:  # a failed ROLLBACK left it open: every writer after would fail on it
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                db.close()
                db = self._shared = self._open(shared=True)
        return db

    # -- statements --------------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, serialized: bool = True) -> Iterator[Connection]:
        # SQLite has one writer at a time whatever is asked: BEGIN IMMEDIATE takes the lock up front.
        if self.read_only:
            raise StoreError(self.path, "opened read-only: nothing can be written from here")
        if not self._writer.acquire(timeout=WRITE_WAIT_SECONDS):
            raise StoreError(self.path, "database is locked", "another writer of this process holds it")
        try:
            try:
                db = self._writing()
                db.execute("BEGIN IMMEDIATE")
            except (sqlite3.Error, OSError) as exc:
                raise self.error(exc) from exc
            try:
                yield db
            except sqlite3.Error as exc:
                self._rollback(db)
                raise self.error(exc) from exc
            except BaseException:
                self._rollback(db)
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                raise self.error(exc) from exc
        finally:
            self._writer.release()

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        if db.in_transaction:  # SQLite may have rolled back already (a full disk does)
            db.execute("ROLLBACK")

    def insert(self, db: Connection, sql: str, params: Sequence[Any]) -> int:
        cursor = db.execute(sql, params)
        return int(getattr(cursor, "lastrowid", 0) or 0)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._sqlite().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc) from exc

    def inspect(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        db = self._sqlite()
        db.row_factory = sqlite3.Row
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc) from exc
        finally:
            db.row_factory = None

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        # One JSON parameter: SQLite limits how many ``?`` one statement may have.
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values))

    def wait_for_change(self, timeout: float) -> bool:
        # SQLite tells nobody of a commit: at once, so that the caller polls (at its own interval).
        return False

    def exists(self) -> bool:
        return self.path.exists()

    # -- schema ------------------------------------------------------------------------------------

    def create_schema(self) -> None:
        db = self._sqlite()
        try:
            # executescript commits on its own, so it runs outside our transaction helper. Its CREATE
            # ... IF NOT EXISTS also adds tables and indexes new since a store was made. A new store
            # gets them in one transaction (one fsync, not one per statement).
            new = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None
            script = schema_text()
            db.executescript(f"BEGIN IMMEDIATE;\n{script}\nCOMMIT;" if new else script)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._rollback(db)
            raise self.error(exc) from exc

    def columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self.read(f"PRAGMA table_info({table})")}

    def add_column(self, table: str, name: str, kind: str) -> None:
        with self.transaction() as db:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    # -- errors ------------------------------------------------------------------------------------

    def error(self, exc: BaseException) -> StoreError:
        """The store's error for a failure of SQLite or of the file system under it."""
        if isinstance(exc, OSError):
            return StoreError(self.path, _os_cause(self.path, exc))
        cause = str(exc)
        hint = next((h for words, h in _HINTS.items() if words in cause), "")
        if "unable to open" in cause and self.path.parent.is_file():
            cause, hint = (
                f"the state directory {self.path.parent} is a file",
                "point the plan's state_dir elsewhere",
            )
        if "disk I/O error" in cause and _no_space(self.path.parent):
            # SQLite says ENOSPC this way when it strikes while growing -wal or -shm.
            cause, hint = "database or disk is full (disk I/O error)", _HINTS["database or disk is full"]
        return StoreError(self.path, cause, hint)


def _created(db: sqlite3.Connection) -> bool:
    """Has the store's creator finished (its last step records the schema version in ``meta``)?"""
    try:
        return db.execute("SELECT 1 FROM meta WHERE key = 'schema'").fetchone() is not None
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False
        raise


def _no_space(directory: Path) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False


def schema_text() -> str:
    """The schema every backend creates (CREATE ... IF NOT EXISTS), as written in schema.sql."""
    # The loader that read this module reads the file beside it (from a zip too), as pkgutil.get_data
    # would: not importlib.resources (it imports zipfile, some 15 ms of every run's start-up), nor
    # pkgutil itself (15 M instructions to import, 3 % of a run's imports).
    loader = cast(_DataLoader, __spec__.loader)
    return loader.get_data(os.path.join(os.path.dirname(__file__), "schema.sql")).decode("utf-8")


class _DataLoader(Protocol):
    def get_data(self, path: str) -> bytes: ...


def _os_cause(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileExistsError | NotADirectoryError):
        blocking = next((p for p in path.parents if p.is_file()), path.parent)
        return f"the state directory {path.parent} can't be made: {blocking} is a file"
    return exc.strerror or str(exc)

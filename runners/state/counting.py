"""An opt-in counter of the state store's own cost: every statement a backend runs, and the time spent
in the database (statements, BEGIN and COMMIT with its fsync). ``bench/fleet_bench.py`` wraps a
store's backend in it to say what the store costs per 1,000 messages on SQLite and on PostgreSQL;
nothing else uses it, so a real run pays nothing for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from runners.state.backend import Backend, Connection, Cursor


class StatementCount:
    """Statements and seconds, summed over every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.transactions = 0
        self.seconds = 0.0

    def add(self, statements: int, seconds: float, transactions: int = 0) -> None:
        with self._lock:
            self.statements += statements
            self.transactions += transactions
            self.seconds += seconds


class _CountingConnection:
    def __init__(self, inner: Connection, count: StatementCount) -> None:
        self._inner, self._count = inner, count

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        started = time.perf_counter()
        try:
            return self._inner.execute(sql, parameters)
        finally:
            self._count.add(1, time.perf_counter() - started)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        rows = list(parameters)
        started = time.perf_counter()
        try:
            return self._inner.executemany(sql, rows)
        finally:
            self._count.add(len(rows), time.perf_counter() - started)  # one statement per row, as sent


class CountingBackend:
    """``inner`` with every statement counted and timed in ``count`` (the rest passes through)."""

    def __init__(self, inner: Backend, count: StatementCount) -> None:
        self.inner, self.count = inner, count

    def __getattr__(self, name: str) -> Any:  # location, read_only, dialect, columns, exists, ...
        return getattr(self.inner, name)

    def connection(self) -> Connection:
        return _CountingConnection(self.inner.connection(), self.count)

    def transaction(self, *, serialized: bool = True) -> AbstractContextManager[Connection]:
        return self._transaction(serialized)

    @contextmanager
    def _transaction(self, serialized: bool) -> Iterator[Connection]:
        started = time.perf_counter()
        manager = self.inner.transaction(serialized=serialized)
        db = manager.__enter__()
        self.count.add(0, time.perf_counter() - started, transactions=1)  # BEGIN (and a lock)
        try:
            yield _CountingConnection(db, self.count)
        except BaseException as exc:
            if not manager.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            ended = time.perf_counter()
            manager.__exit__(None, None, None)
            self.count.add(0, time.perf_counter() - ended)  # COMMIT, with its fsync on SQLite

    def insert(self, db: Connection, sql: str, params: Sequence[Any]) -> int:
        return self.inner.insert(db, sql, params)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        started = time.perf_counter()
        try:
            return self.inner.read(sql, params)
        finally:
            self.count.add(1, time.perf_counter() - started)

"""What every part of the state store stands on: its backend, transactions and connections.

``StateStore`` is assembled from one module per job (runs, controls, check history, survey, the
mailbox reads, ...); each is a class deriving from ``StoreBase``, so their methods are the store's.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from runners.state.backend import Backend, Connection
from runners.state.fence import Lease, fenced_transaction


class StoreBase:
    _backend: Backend
    #: Set on a fenced copy of the store (``StateStore.fenced``): every write proves the lease first.
    _lease: Lease | None = None
    #: Whether ``batch_intents`` was seen (``keeps_batch_intents``): a table once there stays.
    _batch_intents_seen = False

    def keeps_batch_intents(self) -> bool:
        """Whether the store has its batch intents' table: a store written by a version before them
        and opened read-only (a cockpit, verify) has none, and no APPEND of this version in flight."""
        if not self._batch_intents_seen:
            self._batch_intents_seen = not self.read_only or bool(self._backend.columns("batch_intents"))
        return self._batch_intents_seen

    @property
    def read_only(self) -> bool:
        return self._backend.read_only

    def transaction(self, *, serialized: bool = True) -> AbstractContextManager[Connection]:
        """One short write transaction (raises ``StoreError`` on a read-only store). ``serialized=False``:
        PostgreSQL may run it beside other writes; it must lock what it reads (``Backend.transaction``).
        On a fenced store (``StateStore.fenced``) it first proves the lease, locking the mailbox's row,
        and is refused with ``LeaseLost`` once the lease is no longer the mailbox's current one."""
        if self._lease is not None:
            return fenced_transaction(self._backend, self._lease)
        return self._backend.transaction(serialized=serialized)

    @property
    def backend(self) -> Backend:
        """The database behind the store (its ``dialect``, ``location``, ``wait_for_change``)."""
        return self._backend

    def _db(self) -> Connection:
        return self._backend.connection()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._backend.read(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows by column name (``row["n"]``), for tests and ad-hoc inspection: code asks the store's
        typed methods instead."""
        return self._backend.inspect(sql, params)

    def connect(self) -> None:
        """Open this thread's connection now, so that a store that can't be read says so at once."""
        self._backend.connection()

    def close(self) -> None:
        """Close this thread's connection (another thread's stays open), and the process's writers'
        connection unless a transaction is using it."""
        self._backend.close()

    def close_thread(self) -> None:
        """Close this thread's connection only, for a thread done with the store while others of the
        process go on writing: the writers' connection (its page cache, its prepared statements) stays
        open for them. Closed and opened again after each mailbox, it cost a run of 8 one-message
        mailboxes 7 more connections, each parsing the schema and preparing every statement anew."""
        self._backend.close(writer=False)

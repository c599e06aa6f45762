"""Fencing: a runner whose mailbox lease was taken over writes nothing more about that mailbox.

A lease is a mailbox's ``owner`` and ``heartbeat`` plus its ``lease_token``, a number every claim
raises by one. A store fenced with a lease (``StateStore.fenced``) starts each write transaction by
reading the mailbox's token under a row lock (PostgreSQL: ``FOR UPDATE``, so a claim skips the row
until the transaction ends, and the mailbox's own writes queue on it instead of deadlocking; SQLite:
the write lock of ``BEGIN IMMEDIATE`` already serialises them) and refuses the transaction when the
token moved on: ``LeaseLost``, rolled back with the write.

What the ledger can't fence is the target server: an APPEND sent by a process that froze and woke
after its lease was taken would land. So a runner also refuses to *start* sending once its lease
may have expired by its own clock (``Lease.check``): its last renewal began more than
``SAFE_FRACTION`` of the lease ago, while another runner may take it only after the whole lease.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from runners.state.backend import Backend, Connection
from runners.state.errors import LeaseLost

#: A runner stops sending to the target once this fraction of its lease has passed since its last
#: renewal began (renewals come every third of it): the rest is the margin for a batch in flight,
#: which another runner's recovery, waiting at most ``quiet.SETTLE_SECONDS`` for the target to
#: save it, might not find and would copy again. Half the default lease is
#: longer than a connection may stay silent (the endpoint's ``timeout``, 60 s).
SAFE_FRACTION = 0.5


@dataclass(slots=True)
class Lease:
    """One mailbox held by this process, until ``lost`` or released."""

    mailbox_id: int
    source: str
    token: int
    holder: str
    seconds: float
    #: A retry pass of a partial mailbox: only its failed items (the run's queue says so).
    item_retry: bool = False
    #: ``time.monotonic()`` when the last successful renewal (or the claim) began.
    renewed: float = field(default_factory=time.monotonic)
    lost: bool = False

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the lease surely still holds (before a side effect on a server)."""
        if self.lost or time.monotonic() - self.renewed >= self.seconds * SAFE_FRACTION:
            self.lost = True
            raise LeaseLost(self.source, "its lease ran out before this runner could renew it")


def row_lock(backend: Backend) -> str:
    """The clause that locks the mailbox's row against a claim, a heartbeat and the mailbox's other
    writes until the transaction ends ('' on SQLite, whose write lock does it)."""
    return "" if backend.dialect == "sqlite" else " FOR UPDATE"


def skip_locked(backend: Backend, table: str = "") -> str:
    """The clause that lets concurrent claimers pass over each other's rows (of ``table``, in a
    join), '' on SQLite, whose write lock serialises the claims instead."""
    if backend.dialect == "sqlite":
        return ""
    return f" FOR UPDATE{f' OF {table}' if table else ''} SKIP LOCKED"


def held_by_any(column: str, holders: Sequence[str]) -> str:
    """The clause that also frees a row held by one of ``holders`` (gone processes; '' for none),
    for a claim's WHERE; ``holders`` are its parameters."""
    return f" OR {column} IN ({','.join('?' * len(holders))})" if holders else ""


@contextmanager
def fenced_transaction(backend: Backend, lease: Lease) -> Iterator[Connection]:
    """A write transaction that first proves ``lease`` is still the mailbox's current one."""
    # Not serialized with every other write (PostgreSQL): the row lock orders it against what matters.
    with backend.transaction(serialized=False) as db:
        row = db.execute(
            "SELECT lease_token FROM mailboxes WHERE id = ?" + row_lock(backend), (lease.mailbox_id,)
        ).fetchone()
        if row is None or int(row[0]) != lease.token:
            lease.lost = True
            raise LeaseLost(lease.source, "another runner took the mailbox over")
        yield db

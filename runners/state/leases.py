"""Mailbox leases for a fleet of runners on one store: a run's queue of mailboxes, claimed one at a
time under a lease that a heartbeat renews, and taken over by another runner when it runs out.

A claim takes the run's next open mailbox that nobody holds, or whose holder's heartbeat is older
than the lease (or whose holder is a process on this host that no longer exists), raises its
``lease_token`` and returns the ``Lease``. On PostgreSQL the candidate row is read ``FOR UPDATE SKIP
LOCKED``, so concurrent claimers pass over each other instead of queueing; on SQLite the write lock
of the transaction serialises claims, with the same outcome. Every write the holder then makes goes
through a store fenced with the lease (``StateStore.fenced``, ``runners.state.fence``).
"""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from runners.safe_text import safe_or_none
from runners.state.backend import Connection
from runners.state.base import StoreBase
from runners.state.fence import Lease, held_by_any, skip_locked
from runners.state.runs import alive

#: Mailbox states that end a mailbox's work for a run (its queue row is done).
FINISHED = ("ok", "partial", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class QueuedMailbox:
    """One mailbox of a run's queue, for the launcher's end of run."""

    source: str
    state: str
    done: bool


class LeasesMixin(StoreBase):
    @property
    def shared(self) -> bool:
        """Is this store shared by runner hosts (a database server, not a file of this host)?"""
        return self._backend.dialect != "sqlite"

    def fenced(self, lease: Lease) -> Self:
        """This store, with every write transaction fenced by ``lease`` (same connections)."""
        twin = copy.copy(self)
        twin._lease = lease
        return twin

    def check_lease(self) -> None:
        """On a fenced store: raise ``LeaseLost`` unless its lease surely still holds. Called before
        a side effect the store can't fence (an APPEND to the target). Unfenced: nothing."""
        if self._lease is not None:
            self._lease.check()

    def enqueue_run(self, run_id: int, mailboxes: Sequence[tuple[int, bool]]) -> None:
        """The run's mailboxes, in the order they are to be taken: (mailbox id, item retry)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO run_mailboxes (run_id, mailbox_id, position, item_retry) VALUES (?,?,?,?) "
                "ON CONFLICT (run_id, mailbox_id) DO NOTHING",
                [(run_id, mailbox_id, n, int(retry)) for n, (mailbox_id, retry) in enumerate(mailboxes)],
            )

    def claim_next(self, run_id: int, holder: str, seconds: float, dead: Sequence[str] = ()) -> Lease | None:
        """Take the run's next open mailbox for ``holder``; None when every open one is held.

        ``dead``: holders known to be gone (processes of this host that no longer exist): their
        leases are free at once, without waiting for them to run out.
        """
        now = time.time()
        with self._backend.transaction(serialized=False) as db:  # the row lock is the claim's own
            row = db.execute(
                "SELECT mb.id, mb.source, q.item_retry FROM run_mailboxes q JOIN mailboxes mb ON mb.id = q.mailbox_id "
                "WHERE q.run_id = ? AND q.done = 0 AND (mb.owner IS NULL OR mb.heartbeat IS NULL "
                f"OR mb.heartbeat < ?{held_by_any('mb.owner', dead)}) ORDER BY q.position LIMIT 1"
                + skip_locked(self._backend, "mb"),
                (run_id, now - seconds, *dead),
            ).fetchone()
            if row is None:
                return None
            token = self._take(db, int(row[0]), holder, run_id, now)
        return Lease(int(row[0]), str(row[1]), token, holder, seconds, item_retry=bool(row[2]))

    def claim_leased(self, mailbox_id: int, run_id: int, holder: str, seconds: float) -> Lease | None:
        """Take one given mailbox (not through a queue); None when another live holder has it."""
        now = time.time()
        with self._backend.transaction(serialized=False) as db:
            row = db.execute(
                "SELECT source, owner, heartbeat FROM mailboxes WHERE id = ?" + skip_locked(self._backend),
                (mailbox_id,),
            ).fetchone()
            if row is None:
                return None
            owner, beat = row[1], row[2]
            if owner and owner != holder and not lease_expired(owner, beat, now, seconds):
                return None
            token = self._take(db, mailbox_id, holder, run_id, now)
        return Lease(mailbox_id, str(row[0]), token, holder, seconds)

    @staticmethod
    def _take(db: Connection, mailbox_id: int, holder: str, run_id: int, now: float) -> int:
        db.execute(
            "UPDATE mailboxes SET owner = ?, heartbeat = ?, lease_token = lease_token + 1, state = 'running', "
            "run_id = ?, started = ?, updated = ?, error = NULL, error_kind = NULL WHERE id = ?",
            (holder, now, run_id, now, now, mailbox_id),
        )
        found = db.execute("SELECT lease_token FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
        return int(found[0])

    def renew_leases(self, leases: Sequence[Lease]) -> list[Lease]:
        """The heartbeat: push every lease's expiry on; returns the ones that were lost meanwhile."""
        started, now = time.monotonic(), time.time()
        lost: list[Lease] = []
        # Not fenced (a lost lease is an answer, not an error) and not serialized: one row each.
        with self._backend.transaction(serialized=False) as db:
            for lease in leases:
                cur = db.execute(
                    "UPDATE mailboxes SET heartbeat = ? WHERE id = ? AND lease_token = ? AND owner = ?",
                    (now, lease.mailbox_id, lease.token, lease.holder),
                )
                if cur.rowcount == 1:
                    lease.renewed = started
                else:
                    lost.append(lease)
        for lease in lost:
            lease.lost = True
        return lost

    def release_leased(
        self, run_id: int, state: str, error: str | None = None, error_kind: str | None = None
    ) -> None:
        """On a fenced store: give the mailbox back in ``state``; a finished state closes its queue
        row for ``run_id``, any other (pending: the runner stopped) leaves it for the next claimer."""
        lease = self._lease
        assert lease is not None, "release_leased needs a store fenced with the lease"
        with self.transaction() as db:
            db.execute(
                "UPDATE mailboxes SET owner = NULL, state = ?, error = ?, error_kind = ?, updated = ? WHERE id = ?",
                (state, safe_or_none(error), error_kind, time.time(), lease.mailbox_id),
            )
            if state in FINISHED:
                db.execute(
                    "UPDATE run_mailboxes SET done = 1 WHERE run_id = ? AND mailbox_id = ?",
                    (run_id, lease.mailbox_id),
                )

    def open_in_run(self, run_id: int) -> int:
        """How many of the run's mailboxes no runner has finished yet."""
        return int(
            self._read("SELECT COUNT(*) FROM run_mailboxes WHERE run_id = ? AND done = 0", (run_id,))[0][0]
        )

    def run_queue(self, run_id: int) -> list[QueuedMailbox]:
        """The run's mailboxes with their states, in the queue's order."""
        rows = self._read(
            "SELECT mb.source, mb.state, q.done FROM run_mailboxes q JOIN mailboxes mb ON mb.id = q.mailbox_id "
            "WHERE q.run_id = ? ORDER BY q.position",
            (run_id,),
        )
        return [QueuedMailbox(str(r[0]), str(r[1]), bool(r[2])) for r in rows]

    def runs_with_open_work(self) -> list[int]:
        """Runs still marked running that have mailboxes no runner finished, oldest first."""
        rows = self._read(
            "SELECT DISTINCT q.run_id FROM run_mailboxes q JOIN runs r ON r.id = q.run_id "
            "WHERE r.status = 'running' AND q.done = 0 ORDER BY q.run_id"
        )
        return [int(r[0]) for r in rows]


def lease_expired(owner: str, heartbeat: float | None, now: float, seconds: float) -> bool:
    """Has ``owner``'s lease run out: its heartbeat is older than ``seconds``, or it is a process of
    this host (``host:pid``) that no longer exists?"""
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not alive(int(pid)):
        return True
    return heartbeat is None or now - heartbeat > seconds

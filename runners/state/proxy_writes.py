"""The routing proxy's writes: one transaction per batch (logins, captured passwords, the on-login
queue, live session counts), the journal pruned to its bounds in the same transaction.

The proxy never waits on these: its store writer (``runners.proxy.store_writer``) calls them from
its own thread, about every 100 ms.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runners.safe_text import safe
from runners.state.backend import Connection
from runners.state.base import StoreBase

if TYPE_CHECKING:  # the proxy's rows: a run never builds one, and doesn't import them (start-up)
    from runners.state.proxy_rows import JournalLimits, LoginRow, ProxyBatch, QueuedLogin, SealedCredential

_DAY = 86400.0
#: Users tallied between cuts at most (their logins not yet cut): a few hundred KB.
_UNCUT_USERS = 5000


class ProxyWritesMixin(StoreBase):
    #: Per user, the logins this store wrote since it last cut that user's journal. The cut waits for
    #: a tenth of the bound: a query per active user on every batch (every 100 ms) was the largest
    #: part of the journal's cost in the proxy's profile (its saving was not measured on its own).
    _uncut: dict[str, int] | None = None

    def record_proxy_batch(self, batch: ProxyBatch, limits: JournalLimits | None = None) -> None:
        """Commit everything the proxy gathered since the last batch, in one transaction (``limits``:
        the journal's bounds, ``JournalLimits()`` when not given)."""
        if not batch:
            return
        limits = limits or _default_limits()
        with self.transaction() as db:
            _insert_logins(db, batch.logins)
            _keep_credentials(db, batch.credentials)
            _queue(db, batch.queued)
            if batch.sessions is not None:
                db.execute("DELETE FROM proxy_sessions WHERE proxy = ?", (batch.sessions.proxy,))
                db.executemany(
                    "INSERT INTO proxy_sessions (proxy, backend, service, sessions, updated) VALUES (?,?,?,?,?)",
                    [
                        (batch.sessions.proxy, c.backend, c.service, c.sessions, batch.sessions.updated)
                        for c in batch.sessions.counts
                    ],
                )
            _prune_users(db, self._due_for_cut(batch.logins, limits.per_user), limits.per_user)

    def _due_for_cut(self, logins: Sequence[LoginRow], keep: int) -> set[str]:
        """The users whose journal may now hold more than ``keep`` + a tenth of it: each user keeps at
        most that many rows between cuts (exactly ``keep`` where the bound is under 20)."""
        if self._uncut is None:
            self._uncut = {}
        uncut = self._uncut
        for row in logins:
            uncut[row.user] = uncut.get(row.user, 0) + 1
        if len(uncut) > _UNCUT_USERS:  # the tally stays small: everyone is cut once, then it starts again
            due = set(uncut)
        else:
            slack = max(1, keep // 10)
            due = {row.user for row in logins if uncut[row.user] >= slack}
        for user in due:
            del uncut[user]
        return due

    def prune_proxy_journal(self, limits: JournalLimits | None = None, now: float | None = None) -> int:
        """Drop logins older than the age bound and beyond the total bound, and expired captured
        passwords; returns the journal rows dropped."""
        limits = limits or _default_limits()
        now = time.time() if now is None else now
        with self.transaction() as db:
            old = db.execute("DELETE FROM proxy_logins WHERE ts < ?", (now - limits.max_age_days * _DAY,))
            dropped = old.rowcount
            newest = db.execute("SELECT COALESCE(MAX(id), 0) FROM proxy_logins").fetchone()[0]
            extra = db.execute("DELETE FROM proxy_logins WHERE id <= ?", (int(newest) - limits.total,))
            db.execute("DELETE FROM captured_credentials WHERE expires <= ?", (now,))
        return dropped + extra.rowcount

    def forget_proxy_sessions(self, proxy: str) -> None:
        """A proxy that stops takes its session counts with it."""
        with self.transaction() as db:
            db.execute("DELETE FROM proxy_sessions WHERE proxy = ?", (proxy,))


def _default_limits() -> JournalLimits:
    from runners.state.proxy_rows import JournalLimits

    return JournalLimits()


def _insert_logins(db: Connection, rows: Sequence[LoginRow]) -> None:
    # ``safe`` of each distinct text once per batch: most of a batch's texts repeat (the client
    # address, the route's reason, the backend's words, a user's logins), and ``safe`` was most of a
    # row's cost. A plain dict, filled first: a dict subclass's ``[]`` (``__missing__``) goes through a
    # method call at every lookup.
    texts = {t for r in rows for t in (r.client, r.login, r.user, r.backend_login, r.reason, r.detail)}
    shown = {t: None if t is None else safe(t) for t in texts}
    db.executemany(
        "INSERT INTO proxy_logins (ts, service, client, login, user_name, backend, backend_login, decided_by, "
        "reason, outcome, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                r.ts,
                r.service,
                shown[r.client],
                shown[r.login],
                shown[r.user],
                r.backend,
                shown[r.backend_login],
                r.decided_by,
                shown[r.reason],
                r.outcome,
                shown[r.detail],
            )
            for r in rows
        ],
    )


def _keep_credentials(db: Connection, rows: Sequence[SealedCredential]) -> None:
    db.executemany(
        "INSERT INTO captured_credentials (user_name, backend, login, key_id, nonce, ciphertext, captured, expires) "
        "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (user_name, backend) DO UPDATE SET login = excluded.login, "
        "key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, "
        "captured = excluded.captured, expires = excluded.expires",
        [(c.user, c.backend, c.login, c.key_id, c.nonce, c.ciphertext, c.captured, c.expires) for c in rows],
    )


def _queue(db: Connection, rows: Sequence[QueuedLogin]) -> None:
    db.executemany(
        "INSERT INTO login_queue (wave, mailbox, queued, service, client) VALUES (?,?,?,?,?) "
        "ON CONFLICT (wave, mailbox) DO NOTHING",
        [(q.wave, q.mailbox, q.queued, q.service, safe(q.client)) for q in rows],
    )


def _prune_users(db: Connection, users: set[str], keep: int) -> None:
    """Keep each user's newest ``keep`` logins (the index on (user_name, id) finds the cut); one
    statement a user."""
    db.executemany(
        "DELETE FROM proxy_logins WHERE user_name = ? AND id <= (SELECT id FROM proxy_logins "
        "WHERE user_name = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
        [(name, name, keep) for name in map(safe, users)],
    )

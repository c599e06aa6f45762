"""What ``status``, the cockpit's proxy view and triage read of the routing proxy: a user's last
logins, counters per backend, service and outcome over a time range, the latest failures with the
backend's words, the sessions open now, and the mailboxes queued by logins.

A store made before the proxy, opened read-only, has none of these tables: it reads as empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from runners.state.base import StoreBase
from runners.state.errors import StoreError

if TYPE_CHECKING:  # the proxy's rows: a run never reads one, and doesn't import them (start-up)
    from runners.state.proxy_rows import LiveSessions, LoginCounter, LoginRow

#: A proxy whose counts are older than this is presumed gone (it republishes every few seconds).
SESSIONS_FRESH_SECONDS = 30.0

_LOGIN_COLUMNS = (
    "ts, service, client, login, user_name, backend, backend_login, decided_by, reason, outcome, detail"
)
_T = TypeVar("_T")


class ProxyReadsMixin(StoreBase):
    def proxy_logins(self, user: str, limit: int = 20) -> list[LoginRow]:
        """The last ``limit`` logins of ``user`` (the route's user or the login as typed), newest first."""
        # A login typed as the user's name is found by the user's index; the typed login's index holds
        # only the others, and is used only where its condition is stated (schema.sql).
        return self._proxy_read(
            f"SELECT {_LOGIN_COLUMNS} FROM proxy_logins WHERE id IN ("
            "SELECT id FROM proxy_logins WHERE user_name = ? UNION "
            "SELECT id FROM proxy_logins WHERE login = ? AND login <> user_name) ORDER BY id DESC LIMIT ?",
            (user, user, limit),
            _login,
        )

    def proxy_failures(self, limit: int = 10, since: float | None = None) -> list[LoginRow]:
        """The newest failed logins (refused, backend down, blocked), with the backend's words."""
        from runners.state.proxy_rows import FAILED_OUTCOMES

        marks = ",".join("?" * len(FAILED_OUTCOMES))
        return self._proxy_read(
            f"SELECT {_LOGIN_COLUMNS} FROM proxy_logins WHERE outcome IN ({marks}) AND ts >= ? "
            "ORDER BY id DESC LIMIT ?",
            (*FAILED_OUTCOMES, since or 0.0, limit),
            _login,
        )

    def proxy_login_counters(self, since: float, until: float | None = None) -> list[LoginCounter]:
        """Logins per backend, service and outcome with ``since <= ts < until``."""
        from runners.state.proxy_rows import LoginCounter

        return self._proxy_read(
            "SELECT backend, service, outcome, COUNT(*) FROM proxy_logins WHERE ts >= ? AND ts < ? "
            "GROUP BY backend, service, outcome ORDER BY backend, service, outcome",
            (since, until if until is not None else time.time() + 1.0),
            lambda r: LoginCounter(r[0], str(r[1]), str(r[2]), int(r[3])),
        )

    def proxy_sessions(self, now: float | None = None) -> list[LiveSessions]:
        """Sessions open now per backend and service, summed over the proxies that are alive."""
        from runners.state.proxy_rows import LiveSessions

        fresh = (time.time() if now is None else now) - SESSIONS_FRESH_SECONDS
        return self._proxy_read(
            "SELECT backend, service, SUM(sessions), COUNT(*), MAX(updated) FROM proxy_sessions "
            "WHERE updated >= ? GROUP BY backend, service ORDER BY backend, service",
            (fresh,),
            lambda r: LiveSessions(str(r[0]), str(r[1]), int(r[2]), int(r[3]), float(r[4])),
        )

    def queued_by_login(self, wave: str | None = None) -> dict[str, set[str]]:
        """Wave -> the mailboxes their users' first login through the proxy queued."""
        sql = "SELECT wave, mailbox FROM login_queue"
        params_: tuple[str, ...] = ()
        if wave is not None:
            sql, params_ = sql + " WHERE wave = ?", (wave,)
        out: dict[str, set[str]] = {}
        for w, mailbox in self._proxy_read(sql, params_, lambda r: (str(r[0]), str(r[1]))):
            out.setdefault(w, set()).add(mailbox)
        return out

    def _proxy_read(self, sql: str, params: Sequence[Any], make: Callable[[tuple[Any, ...]], _T]) -> list[_T]:
        try:
            rows = self._read(sql, params)
        except StoreError as exc:
            if "no such table" in str(exc) or "does not exist" in str(
                exc
            ):  # a store older than the proxy, read-only (SQLite, PostgreSQL)
                return []
            raise
        return [make(row) for row in rows]


def _login(row: tuple[Any, ...]) -> LoginRow:
    from runners.state.proxy_rows import LoginRow

    return LoginRow(
        ts=float(row[0]),
        service=str(row[1]),
        client=str(row[2]),
        login=str(row[3]),
        user=str(row[4]),
        backend=row[5],
        backend_login=row[6],
        decided_by=row[7],
        reason=row[8],
        outcome=str(row[9]),
        detail=str(row[10] or ""),
    )

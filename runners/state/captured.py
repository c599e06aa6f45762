"""Captured passwords in the state store: ciphertext rows only (``runners.connectors.captured`` seals
and opens them). Read for the engine, replaced by a re-key, dropped by ``cutover proxy forget`` and
when they expire."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from runners.state.base import StoreBase
from runners.state.errors import StoreError

if TYPE_CHECKING:  # the proxy's rows: a run without captured passwords doesn't import them (start-up)
    from runners.state.proxy_rows import SealedCredential

_COLUMNS = "user_name, backend, login, key_id, nonce, ciphertext, captured, expires"


class CapturedMixin(StoreBase):
    def captured_credential(
        self, user: str, backend: str, now: float | None = None
    ) -> SealedCredential | None:
        """The sealed password of ``user`` (the route's user or the login it was accepted for) on
        ``backend``, unless it expired; None when none was captured."""
        try:
            rows = self._read(
                f"SELECT {_COLUMNS} FROM captured_credentials WHERE backend = ? AND expires > ? "
                "AND (user_name = ? OR login = ?) ORDER BY captured DESC LIMIT 1",
                (backend, time.time() if now is None else now, user, user),
            )
        except StoreError as exc:
            if "no such table" in str(exc) or "does not exist" in str(
                exc
            ):  # a store older than the proxy, read-only (SQLite, PostgreSQL)
                return None
            raise
        return _sealed(rows[0]) if rows else None

    def captured_credentials(self) -> list[SealedCredential]:
        """Every sealed password still kept (for a re-key)."""
        return [
            _sealed(row)
            for row in self._read(f"SELECT {_COLUMNS} FROM captured_credentials ORDER BY user_name")
        ]

    def reseal_credential(self, old: SealedCredential, new: SealedCredential) -> bool:
        """Replace ``old`` by ``new`` unless the proxy captured a fresher one since."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE captured_credentials SET key_id = ?, nonce = ?, ciphertext = ? "
                "WHERE user_name = ? AND backend = ? AND nonce = ?",
                (new.key_id, new.nonce, new.ciphertext, old.user, old.backend, old.nonce),
            )
            return cursor.rowcount == 1

    def forget_captured(self, user: str) -> int:
        """Drop every password captured for ``user`` (as the route's user or as the accepted login)."""
        with self.transaction() as db:
            cursor = db.execute(
                "DELETE FROM captured_credentials WHERE user_name = ? OR login = ?", (user, user)
            )
            return cursor.rowcount

    def drop_expired_credentials(self, now: float | None = None) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "DELETE FROM captured_credentials WHERE expires <= ?", (time.time() if now is None else now,)
            )
            return cursor.rowcount


def _sealed(row: tuple[Any, ...]) -> SealedCredential:
    from runners.state.proxy_rows import SealedCredential

    user, backend, login, key_id, nonce, ciphertext, captured, expires = row
    return SealedCredential(
        str(user),
        str(backend),
        str(login),
        str(key_id),
        bytes(nonce),
        bytes(ciphertext),
        float(captured),
        float(expires),
    )

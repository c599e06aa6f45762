"""The per-server connection caps of a fleet, in the store: slot N of a server is free or held by
one runner process until its lease expires. A slot is taken like a mailbox (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, the write lock on SQLite) and renewed with the runner's heartbeat, so a
process that dies gives its connections back after the lease at the latest."""

from __future__ import annotations

import time
from collections.abc import Sequence

from runners.state.base import StoreBase
from runners.state.fence import held_by_any, skip_locked


class ServerSlotsMixin(StoreBase):
    def take_slot(
        self, server: str, limit: int, holder: str, seconds: float, dead: Sequence[str] = ()
    ) -> int | None:
        """One free slot of ``server`` (of its first ``limit``) for ``holder``; None when all are held."""
        now = time.time()
        with self._backend.transaction(serialized=False) as db:
            row = db.execute(
                "SELECT slot FROM server_slots WHERE server = ? AND slot < ? AND "
                f"(holder IS NULL OR expires < ?{held_by_any('holder', dead)}) ORDER BY slot LIMIT 1"
                + skip_locked(self._backend),
                (server, limit, now, *dead),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE server_slots SET holder = ?, expires = ? WHERE server = ? AND slot = ?",
                (holder, now + seconds, server, row[0]),
            )
        return int(row[0])

    def ensure_slots(self, server: str, limit: int) -> None:
        """The rows of ``server``'s first ``limit`` slots (once per server and process is enough)."""
        with self._backend.transaction(serialized=False) as db:
            db.executemany(
                "INSERT INTO server_slots (server, slot) VALUES (?,?) ON CONFLICT (server, slot) DO NOTHING",
                [(server, n) for n in range(limit)],
            )

    def give_slot(self, server: str, slot: int, holder: str) -> None:
        with self._backend.transaction(serialized=False) as db:
            db.execute(
                "UPDATE server_slots SET holder = NULL, expires = NULL WHERE server = ? AND slot = ? AND holder = ?",
                (server, slot, holder),
            )

    def renew_slots(self, holder: str, seconds: float) -> None:
        with self._backend.transaction(serialized=False) as db:
            db.execute(
                "UPDATE server_slots SET expires = ? WHERE holder = ?", (time.time() + seconds, holder)
            )

    def slots_held(self, server: str) -> int:
        """Slots of ``server`` held under a lease that has not run out (for status and tests)."""
        rows = self._read(
            "SELECT COUNT(*) FROM server_slots WHERE server = ? AND holder IS NOT NULL AND expires >= ?",
            (server, time.time()),
        )
        return int(rows[0][0])

"""The runner processes of a fleet (``cutover run`` and ``cutover runner``, on any host), each with
its heartbeat and the mailboxes it holds: what ``cutover status`` lists, and how a runner knows that
a holder on its own host is gone without waiting for its lease to run out."""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

from runners.state.base import StoreBase
from runners.state.runs import alive

if TYPE_CHECKING:
    from runners.state.listing_rows import HostRow

#: A stopped runner stays listed this long (its last heartbeat says when it stopped).
KEEP_STOPPED = 86400.0


class FleetHostsMixin(StoreBase):
    def register_host(self, name: str, state: str) -> None:
        """This process, under ``name``, is (still) at work: also its heartbeat."""
        now = time.time()
        with self._backend.transaction(serialized=False) as db:
            db.execute(
                "DELETE FROM fleet_hosts WHERE state = 'stopped' AND heartbeat < ?", (now - KEEP_STOPPED,)
            )
            db.execute(
                "INSERT INTO fleet_hosts (name, host, pid, started, heartbeat, state) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "heartbeat = excluded.heartbeat, state = excluded.state",
                (name, socket.gethostname(), os.getpid(), now, now, state),
            )

    def host_beat(self, name: str, state: str | None = None) -> None:
        with self._backend.transaction(serialized=False) as db:
            db.execute(
                "UPDATE fleet_hosts SET heartbeat = ?, state = COALESCE(?, state) WHERE name = ?",
                (time.time(), state, name),
            )

    def fleet_hosts(self) -> list[HostRow]:
        """Every runner process recorded, newest heartbeat first, with the mailboxes each holds."""
        from runners.state.listing_rows import HostRow

        if not self._backend.columns("fleet_hosts"):  # a store from before fleets, opened read-only
            return []
        held: dict[str, list[str]] = {}
        for owner, source in self._read(
            "SELECT owner, source FROM mailboxes WHERE owner IS NOT NULL ORDER BY source"
        ):
            held.setdefault(str(owner), []).append(str(source))
        rows = self._read(
            "SELECT name, host, pid, started, heartbeat, state FROM fleet_hosts ORDER BY heartbeat DESC, name"
        )
        return [
            HostRow(
                str(r[0]),
                str(r[1]),
                int(r[2]),
                float(r[3]),
                float(r[4]),
                _state(r),
                tuple(held.get(r[0], ())),
            )
            for r in rows
        ]

    def dead_holders(self) -> list[str]:
        """Runner names of this host whose process no longer exists: their leases are free now."""
        rows = self._read(
            "SELECT name, pid FROM fleet_hosts WHERE host = ? AND state != 'stopped'", (socket.gethostname(),)
        )
        return [str(name) for name, pid in rows if not alive(int(pid))]


def _state(row: tuple[object, ...]) -> str:
    """A process of this host that is gone was killed: say so even if its row says otherwise."""
    host, pid, state = row[1], row[2], str(row[5])
    if state != "stopped" and host == socket.gethostname() and isinstance(pid, int) and not alive(pid):
        return "gone"
    return state

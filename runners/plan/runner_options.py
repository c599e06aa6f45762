"""The plan's ``[runner]`` section: how runners share a store (a fleet of hosts, ``docs/fleet.md``).

``lease_seconds`` is how long a runner holds a mailbox (and a connection slot) without renewing it:
its heartbeat comes every third of it; a runner silent for longer (dead, frozen, cut off) loses its
mailboxes to another runner, which resumes them from the ledger. Shorter means a faster takeover
after a crash; longer tolerates longer pauses (a slow store, a long GC) without one.
"""

from __future__ import annotations

from runners.plan.tables import Table

RUNNER_KEYS = ("lease_seconds",)
DEFAULT_LEASE_SECONDS = 120.0


def load_lease_seconds(root: Table) -> float:
    """``[runner] lease_seconds`` (default 120). Raises ``PlanError`` naming file, line and key."""
    table = root.table("runner")
    if table is None:
        return DEFAULT_LEASE_SECONDS
    table.check_keys(RUNNER_KEYS)
    seconds = table.positive_number("lease_seconds", DEFAULT_LEASE_SECONDS)
    if seconds < 1.0:
        raise table.error("lease_seconds", "must be at least 1 second")
    return seconds

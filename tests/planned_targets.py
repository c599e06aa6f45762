"""Lifting the plan's refusal of a target type nobody built yet, the way the Exchange issues will:
by registering an adapter for it. Only for tests of what reads a plan (readiness checks, the
loader); the adapter registered here opens nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from runners.adapters import AdapterSpec, register_target, target_types, unregister_target
from runners.errors import MigrationError
from runners.model import TargetCapabilities
from runners.plan.model import Endpoint, MailboxEntry

#: What an Exchange target will declare: it re-renders MIME, so bytes can't prove a copy.
EXCHANGE_LIKE = TargetCapabilities(
    keeps_bytes=False, batch_messages=50, batch_bytes=None, flags_mutable=True, connections_per_mailbox=2
)


def not_built(endpoint: Endpoint, entry: MailboxEntry) -> object:
    raise MigrationError(f"the {endpoint.type} adapter is a placeholder in these tests")


@contextmanager
def planned(*kinds: str) -> Iterator[None]:
    """Register placeholder target adapters for ``kinds`` while the block runs (a kind already built
    keeps its real adapter)."""
    placeholders = [kind for kind in kinds if kind not in target_types()]
    for kind in placeholders:
        register_target(AdapterSpec(kind, "planned_targets:not_built", EXCHANGE_LIKE))
    try:
        yield
    finally:
        for kind in placeholders:
            unregister_target(kind)

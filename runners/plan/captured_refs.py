"""``captured:`` references bound to the store and the capture keys once the whole plan is loaded.

The mailbox list and ``[source]``/``[target]`` are read before ``[proxy.capture]``; this last step of
the loader turns each ``captured:`` into a ``CapturedSecret`` (``runners.plan.proxy_capture_options``),
so the connectors' credential lookup has all it needs from the entry alone.
"""

from __future__ import annotations

import dataclasses

from runners.errors import PlanError
from runners.plan.model import Endpoint, MailboxEntry, Plan, Secret
from runners.plan.proxy_capture_options import CAPTURED_REF, CapturedSecret, CaptureSettings
from runners.plan.tables import Table


def bind_captured(plan: Plan, capture: CaptureSettings, where: Table) -> Plan:
    """``plan`` with each ``captured:`` reference turned into a ``CapturedSecret`` that knows the store
    and the keys; a reference with no capture key to open it is an error naming the row."""
    source = _endpoint(plan, plan.source, "legacy", capture, where, "source")
    target = _endpoint(plan, plan.target, "target", capture, where, "target")
    entries = tuple(_entry(plan, e, capture) for e in plan.mailboxes)
    if source is plan.source and target is plan.target and entries == plan.mailboxes:
        return plan
    return dataclasses.replace(plan, source=source, target=target, mailboxes=entries)


def _captured(plan: Plan, backend: str, capture: CaptureSettings) -> CapturedSecret:
    return CapturedSecret(
        CAPTURED_REF, backend=backend, state_db=plan.state_db, state_server=plan.state_server, capture=capture
    )


def _usable(capture: CaptureSettings) -> bool:
    return capture.key is not None or bool(capture.previous_keys)


def _endpoint(
    plan: Plan, endpoint: Endpoint, backend: str, capture: CaptureSettings, where: Table, name: str
) -> Endpoint:
    if endpoint.password is None or endpoint.password.ref != CAPTURED_REF:
        return endpoint
    if not _usable(capture):
        raise where.doc.error((name, "password"), f'"{CAPTURED_REF}" needs [proxy.capture] with a key')
    return dataclasses.replace(endpoint, password=_captured(plan, backend, capture))


def _entry(plan: Plan, entry: MailboxEntry, capture: CaptureSettings) -> MailboxEntry:
    changes: dict[str, Secret] = {}
    for column, backend in (("source_password", "legacy"), ("target_password", "target")):
        secret: Secret | None = getattr(entry, column)
        if secret is None or secret.ref != CAPTURED_REF:
            continue
        if not _usable(capture):
            path, _, line = entry.origin.rpartition(":")
            raise PlanError(
                path or entry.origin,
                int(line) if line.isdigit() else None,
                column,
                f'"{CAPTURED_REF}" needs [proxy.capture] with a key',
            )
        changes[column] = _captured(plan, backend, capture)
    return dataclasses.replace(entry, **changes) if changes else entry  # type: ignore[arg-type]

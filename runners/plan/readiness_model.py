"""The readiness checker's part of the plan: ``[dns]``, ``[directory.*]``, ``[capacity]``,
``[checks]`` and ``[[waivers]]``. All optional: a check whose inputs are absent is *skipped*.

What every plan holds is here; the sections' own settings are in ``runners.plan.readiness_parts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runners.plan.readiness_parts import Database, DirectorySettings, DnsSettings, Waiver


@dataclass(frozen=True, slots=True)
class CapacitySettings:
    #: Client access endpoints by role (``ews``, ``autodiscover``, ``owa``, anything): HTTPS URLs.
    endpoints: dict[str, str] = field(default_factory=dict)
    #: SMTP hubs of the target as ``host[:port]`` (port 25 by default), probed with EHLO/STARTTLS.
    smtp_hubs: tuple[str, ...] = ()
    #: Where to connect for an endpoint or hub name (lower case) while TLS still asks for the name,
    #: as curl's ``--resolve``: ``{ "mail.example.com" = "192.0.2.10" }``.
    addresses: dict[str, str] = field(default_factory=dict)
    #: Per-mailbox quota on the target, in bytes.
    mailbox_quota_bytes: int | None = None
    #: Free share required on quotas and databases (0.10 = 10 %).
    headroom: float = 0.10
    databases: tuple[Database, ...] = ()
    #: Length of the cutover window in hours, for the migration time estimate.
    window_hours: float | None = None
    #: Expected throughput (msg/s) for the estimate; None = measured by earlier runs in the state store.
    throughput: float | None = None
    #: Certificates closer to expiry than this are a warning; closer than ``cert_block_days`` a blocker.
    cert_warn_days: int = 30
    cert_block_days: int = 7
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class ReadinessConfig:
    dns: DnsSettings | None = None
    source_directory: DirectorySettings | None = None
    target_directory: DirectorySettings | None = None
    capacity: CapacitySettings = field(default_factory=CapacitySettings)
    waivers: tuple[Waiver, ...] = ()
    #: Seconds one check may take before it is abandoned as "error". Generous because the first
    #: check to ask for the source survey pays for it; every network probe has its own short timeout.
    timeout: float = 300.0
    #: Checks talking to the same server at once.
    per_server: int = 4
    #: Read every source message once to find corrupt ones, long lines, missing Message-IDs, MIME
    #: defects and catch-all INBOXes. Costs one full read of the source; false skips those checks.
    scan: bool = True
    #: The mailbox (source login or target address) the target checks may APPEND to and remove
    #: from again; None = the first mailbox of the plan.
    canary: str | None = None

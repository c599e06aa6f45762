"""The readiness checker's part of the plan: ``[dns]``, ``[directory.*]``, ``[capacity]``,
``[checks]`` and ``[[waivers]]``. All optional: a check whose inputs are absent is *skipped*."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from runners.plan.secret import Secret

DirectoryPreset = Literal["inetlocalmailrecipient", "iplanet", "qmail", "ad"]


@dataclass(frozen=True, slots=True)
class DnsSettings:
    #: Mail domains to check; empty = the domains of the mailbox list's target addresses.
    domains: tuple[str, ...] = ()
    #: Recursive resolver as ``host[:port]``; None = the system's (/etc/resolv.conf).
    resolver: str | None = None
    #: Authoritative servers to ask per zone (``host[:port]``), overriding the NS lookup:
    #: for split-horizon setups and for the test lab on loopback.
    nameservers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: MX host patterns (fnmatch, case-insensitive) of the legacy and of the target platform.
    legacy_mx: tuple[str, ...] = ()
    target_mx: tuple[str, ...] = ()
    #: What the SPF record must include for the target to send (``include:`` domains).
    spf_includes: tuple[str, ...] = ()
    #: Highest TTL (seconds) allowed on MX and autodiscover before the cutover.
    max_ttl: int = 300


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """One LDAP directory (``[directory.source]`` or ``[directory.target]``)."""

    url: str  # ldap://host:port or ldaps://host:port
    base: str
    preset: DirectoryPreset = "inetlocalmailrecipient"
    bind_dn: str | None = None
    bind_password: Secret | None = None
    #: Extra LDAP filter ANDed with the preset's (``(departmentNumber=42)``).
    filter: str | None = None
    #: Attribute overrides by role: ``{ mail = "mail", aliases = "mailAlternateAddress", ... }``.
    attributes: dict[str, str] = field(default_factory=dict)
    starttls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Database:
    """A target mailbox database (or storage pool) and the mailboxes planned onto it."""

    name: str
    storage_bytes: int
    #: fnmatch patterns on target addresses; empty = every mailbox.
    mailboxes: tuple[str, ...] = ()


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
class Waiver:
    check: str
    #: The finding's object id, or ``*`` for all objects of that check.
    object: str
    reason: str
    expires: date
    approved_by: str | None = None
    #: Only the finding with this key (a check's findings on one object differ by key: "tls", "size").
    key: str | None = None


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

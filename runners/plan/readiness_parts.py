"""The optional readiness sections of a plan: ``[dns]``, ``[directory.*]``, ``[capacity] databases``
and ``[[waivers]]`` (``runners.plan.readiness_model`` holds what every plan has).

Apart so that a plan without them, a runner's, doesn't create their classes: ``runners.plan.readiness``
imports this module when the plan has one of them.
"""

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
class Waiver:
    check: str
    #: The finding's object id, or ``*`` for all objects of that check.
    object: str
    reason: str
    expires: date
    approved_by: str | None = None
    #: Only the finding with this key (a check's findings on one object differ by key: "tls", "size").
    key: str | None = None

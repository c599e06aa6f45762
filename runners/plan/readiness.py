"""Parse the readiness sections of a plan (see ``readiness_model``); errors name file, line and key."""

from __future__ import annotations

import ipaddress
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from runners.plan.paths import make_secret, resolve_path
from runners.plan.readiness_model import CapacitySettings, ReadinessConfig
from runners.plan.tables import Table, type_name

# The sections' own settings are imported where a plan has the section (runners.plan.readiness_parts).
if TYPE_CHECKING:
    from runners.plan.readiness_parts import Database, DirectorySettings, DnsSettings, Waiver

READINESS_TABLES = ("dns", "directory", "capacity", "checks", "waivers")
DNS_KEYS = ("domains", "resolver", "nameservers", "legacy_mx", "target_mx", "spf_includes", "max_ttl")
DIRECTORY_KEYS = (
    "url", "base", "preset", "bind_dn", "bind_password", "filter", "attributes", "starttls", "tls_verify",
    "ca_file", "timeout",
)  # fmt: skip
PRESETS = ("inetlocalmailrecipient", "iplanet", "qmail", "ad")
ATTRIBUTE_ROLES = ("mail", "aliases", "forward", "status", "quota", "mailbox", "uid")
CAPACITY_KEYS = (
    "endpoints", "smtp_hubs", "mailbox_quota_bytes", "headroom", "databases", "window_hours", "throughput",
    "cert_warn_days", "cert_block_days", "ca_file", "addresses",
)  # fmt: skip
CHECKS_KEYS = ("timeout", "per_server", "scan", "canary")
WAIVER_KEYS = ("check", "object", "key", "reason", "expires", "approved_by")


def load_readiness(root: Table, base_dir: Path) -> ReadinessConfig:
    checks = root.table("checks")
    if checks is not None:
        checks.check_keys(CHECKS_KEYS)
    directory = root.table("directory")
    source_dir = target_dir = None
    if directory is not None:
        directory.check_keys(("source", "target"))
        source_dir = _directory(directory.table("source"), base_dir)
        target_dir = _directory(directory.table("target"), base_dir)
    return ReadinessConfig(
        dns=_dns(root.table("dns")),
        source_directory=source_dir,
        target_directory=target_dir,
        capacity=_capacity(root.table("capacity"), base_dir),
        waivers=_waivers(root),
        timeout=checks.positive_number("timeout", 300.0) if checks else 300.0,
        per_server=checks.integer("per_server", 4, low=1, high=64) if checks else 4,
        scan=checks.boolean("scan", True) if checks else True,
        canary=checks.string("canary") if checks else None,
    )


def _host_port(table: Table, name: str, value: str) -> str:
    """Accept ``host``, ``host:port`` or an IPv6 address (``::1``; ``[::1]:53`` with a port)."""
    host, _, port = (
        value.rpartition(":") if value.count(":") == 1 or value.startswith("[") else (value, "", "")
    )
    if (port and not port.isdigit()) or not (host or value):
        raise table.error(name, f'"{value}" is not host or host:port')
    return value


def _dns(table: Table | None) -> DnsSettings | None:
    if table is None:
        return None
    from runners.plan.readiness_parts import DnsSettings

    table.check_keys(DNS_KEYS)
    nameservers: dict[str, tuple[str, ...]] = {}
    servers = table.table("nameservers")
    if servers is not None:
        for zone in servers.data:
            nameservers[zone.lower().rstrip(".")] = tuple(
                _host_port(servers, zone, s) for s in servers.string_list(zone)
            )
    resolver = table.string("resolver")
    return DnsSettings(
        domains=tuple(d.lower().rstrip(".") for d in table.string_list("domains")),
        resolver=None if resolver is None else _host_port(table, "resolver", resolver),
        nameservers=nameservers,
        legacy_mx=tuple(p.lower().rstrip(".") for p in table.string_list("legacy_mx")),
        target_mx=tuple(p.lower().rstrip(".") for p in table.string_list("target_mx")),
        spf_includes=tuple(s.lower() for s in table.string_list("spf_includes")),
        max_ttl=table.integer("max_ttl", 300, low=0),
    )


def _directory(table: Table | None, base_dir: Path) -> DirectorySettings | None:
    if table is None:
        return None
    from runners.plan.readiness_parts import DirectorySettings

    table.check_keys(DIRECTORY_KEYS)
    url = table.required_string("url")
    if urlsplit(url).scheme not in ("ldap", "ldaps"):
        raise table.error("url", f'"{url}" must start with ldap:// or ldaps://')
    preset = table.choice(
        "preset", PRESETS, default="ad" if table.key[-1] == "target" else "inetlocalmailrecipient"
    )
    bind_password = table.secret_ref("bind_password")
    ca_file = table.string("ca_file")
    return DirectorySettings(
        url=url,
        base=table.required_string("base"),
        preset=preset,  # type: ignore[arg-type]
        bind_dn=table.string("bind_dn"),
        bind_password=None if bind_password is None else make_secret(bind_password, base_dir),
        filter=table.string("filter"),
        attributes=table.string_map("attributes", allowed_keys=ATTRIBUTE_ROLES),
        starttls=table.boolean("starttls", False),
        tls_verify=table.boolean("tls_verify", True),
        ca_file=None if ca_file is None else str(resolve_path(base_dir, ca_file)),
        timeout=table.positive_number("timeout", 30.0),
    )


def _capacity(table: Table | None, base_dir: Path) -> CapacitySettings:
    if table is None:
        return CapacitySettings()
    table.check_keys(CAPACITY_KEYS)
    endpoints = table.string_map("endpoints")
    for role, url in endpoints.items():
        if urlsplit(url).scheme != "https":
            raise table.error("endpoints", f'{role} = "{url}" must be an https:// URL')
    headroom = table.positive_number("headroom", 0.10)
    if headroom >= 1:
        raise table.error("headroom", f"is a share below 1 (0.10 = 10 %), got {headroom}")
    window = table.positive_number("window_hours", 0.0) or None
    throughput = table.positive_number("throughput", 0.0) or None
    ca_file = table.string("ca_file")
    return CapacitySettings(
        endpoints=endpoints,
        smtp_hubs=tuple(_host_port(table, "smtp_hubs", h) for h in table.string_list("smtp_hubs")),
        mailbox_quota_bytes=table.optional_integer("mailbox_quota_bytes", low=1),
        headroom=headroom,
        databases=_databases(table),
        window_hours=window,
        throughput=throughput,
        cert_warn_days=table.integer("cert_warn_days", 30, low=0),
        cert_block_days=table.integer("cert_block_days", 7, low=0),
        addresses=_addresses(table),
        ca_file=None if ca_file is None else str(resolve_path(base_dir, ca_file)),
    )


def _addresses(table: Table) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, address in table.string_map("addresses").items():
        try:
            out[name.lower().rstrip(".")] = str(ipaddress.ip_address(address.strip("[]")))
        except ValueError:
            raise table.error("addresses", f'{name} = "{address}" must be an IP address') from None
    return out


def _databases(table: Table) -> tuple[Database, ...]:
    items = table.array("databases") or []
    if not items:
        return ()
    from runners.plan.readiness_parts import Database

    out: list[Database] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise table.error("databases", f"item {index + 1} must be a table, got {type_name(item)}")
        entry = Table(table.doc, (*table.key, "databases", index), item)
        entry.check_keys(("name", "storage_bytes", "mailboxes"))
        out.append(
            Database(
                name=entry.required_string("name"),
                storage_bytes=entry.integer("storage_bytes", 0, low=1) or _missing(entry, "storage_bytes"),
                mailboxes=entry.string_list("mailboxes"),
            )
        )
    return tuple(out)


def _missing(table: Table, name: str) -> int:
    raise table.missing(name)


def _waivers(root: Table) -> tuple[Waiver, ...]:
    items = root.array("waivers") or []
    if not items:
        return ()
    from runners.plan.readiness_parts import Waiver

    out: list[Waiver] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise root.error(
                "waivers", f"item {index + 1} must be a table ([[waivers]]), got {type_name(item)}"
            )
        entry = Table(root.doc, ("waivers", index), item)
        entry.check_keys(WAIVER_KEYS)
        expires = item.get("expires")
        if not isinstance(expires, date):
            raise entry.error("expires", "expected a date (expires = 2026-12-31)")
        out.append(
            Waiver(
                check=entry.required_string("check"),
                object=entry.string("object") or "*",
                reason=entry.required_string("reason"),
                expires=expires,
                approved_by=entry.string("approved_by"),
                key=entry.string("key"),
            )
        )
    return tuple(out)

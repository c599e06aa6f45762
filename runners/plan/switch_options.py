"""The plan's ``[switch]`` section: what the cutover switch changes outside the tool, and where.

``[switch.dns]`` names the records each domain must serve after the switch (MX set, autodiscover
CNAME), the primary server that takes a TSIG-signed dynamic update (optional: without it the switch
prints the records to change and waits for them) and the servers to confirm on (optional: the
zone's NS set). ``[switch.directory]`` names the routing attribute the switch sets per user. Secrets
(the TSIG secret, the bind password) are references, read only when the switch runs.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from runners.plan.paths import make_secret, resolve_path
from runners.plan.switch_model import (
    DomainRecords,
    HostPort,
    MxRecord,
    RoutingDirectory,
    SwitchDns,
    SwitchSettings,
    TsigSettings,
)
from runners.plan.tables import Table, type_name

SWITCH_KEYS = ("confirm_timeout", "confirm_interval", "dns", "directory")
SWITCH_DNS_KEYS = (
    "primary",
    "tsig_key",
    "tsig_algorithm",
    "tsig_secret",
    "nameservers",
    "ttl",
    "timeout",
    "domains",
)
DOMAIN_KEYS = ("zone", "mx", "autodiscover")
MX_KEYS = ("host", "preference")
ROUTING_KEYS = (
    "url", "base", "bind_dn", "bind_password", "starttls", "tls_verify", "ca_file", "timeout", "match",
    "attribute", "legacy_value", "target_value",
)  # fmt: skip
#: HMAC algorithms of RFC 8945 worth using (hmac-md5 is left out on purpose).
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")


def load_switch(root: Table, base_dir: Path) -> SwitchSettings | None:
    """``[switch]``, or None when the plan has none. Raises ``PlanError`` naming file, line and key."""
    table = root.table("switch")
    if table is None:
        return None
    table.check_keys(SWITCH_KEYS)
    return SwitchSettings(
        dns=_dns(table.table("dns"), base_dir),
        directory=_directory(table.table("directory"), base_dir),
        confirm_timeout=table.positive_number("confirm_timeout", 900.0),
        confirm_interval=table.positive_number("confirm_interval", 2.0),
    )


def parse_host_port(table: Table, name: str | int, value: str, default_port: int) -> HostPort:
    """``host``, ``host:port``, ``::1`` or ``[::1]:53``; the error names ``table``'s key ``name``."""
    host, port = value, ""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise table.error(name, f'"{value}" is not host or host:port')
    return HostPort(host, int(port) if port else default_port)


def _absolute(name: str) -> str:
    return name.lower().rstrip(".") + "."


def _dns(table: Table | None, base_dir: Path) -> SwitchDns | None:
    if table is None:
        return None
    table.check_keys(SWITCH_DNS_KEYS)
    primary = table.string("primary")
    tsig_key = table.string("tsig_key")
    if tsig_key is not None and primary is None:
        raise table.error("tsig_key", 'a TSIG key needs the "primary" that takes the update')
    tsig = None
    if tsig_key is not None:
        secret = table.secret_ref("tsig_secret")
        if secret is None:
            raise table.error("tsig_key", '[switch.dns] has "tsig_key" but no "tsig_secret"')
        try:
            tsig = TsigSettings(
                name=_absolute(tsig_key),
                algorithm=table.choice("tsig_algorithm", TSIG_ALGORITHMS, default="hmac-sha256") or "",
                secret=make_secret(secret, base_dir),
            )
        except ValueError as exc:
            raise table.error("tsig_secret", str(exc)) from None
    elif "tsig_secret" in table or "tsig_algorithm" in table:
        key = "tsig_secret" if "tsig_secret" in table else "tsig_algorithm"
        raise table.error(key, '[switch.dns] has no "tsig_key" to go with it')
    return SwitchDns(
        domains=_domains(table),
        primary=None if primary is None else parse_host_port(table, "primary", primary, 53),
        tsig=tsig,
        nameservers=_nameservers(table),
        ttl=table.integer("ttl", 300, low=0, high=2_147_483_647),
        timeout=table.positive_number("timeout", 10.0),
    )


def _nameservers(table: Table) -> dict[str, tuple[HostPort, ...]]:
    servers = table.table("nameservers")
    if servers is None:
        return {}
    out: dict[str, tuple[HostPort, ...]] = {}
    for zone in servers.data:
        listed = servers.string_list(zone)
        if not listed:
            raise servers.error(zone, "lists no server (leave the zone out to confirm on its NS set)")
        out[_absolute(zone)] = tuple(parse_host_port(servers, zone, s.strip(), 53) for s in listed)
    return out


def _domains(table: Table) -> tuple[DomainRecords, ...]:
    domains = table.table("domains")
    if domains is None or not domains.data:
        where = None if domains is None else "domains"
        raise table.error(where, '[switch.dns] names no domain ([switch.dns.domains."example.com"])')
    out: list[DomainRecords] = []
    for domain in domains.data:
        entry = domains.table(domain)
        assert entry is not None
        entry.check_keys(DOMAIN_KEYS)
        mx = _mx(entry)
        autodiscover = entry.string("autodiscover")
        if not mx and autodiscover is None:
            raise entry.error(None, f'{entry.where} changes nothing: give "mx", "autodiscover" or both')
        zone = entry.string("zone")
        name = _absolute(domain)
        if zone is not None and not (name == _absolute(zone) or name.endswith("." + _absolute(zone))):
            raise entry.error("zone", f'"{zone}" does not hold {domain}')
        out.append(
            DomainRecords(
                domain=name.rstrip("."),
                zone=_absolute(zone or domain),
                mx=mx,
                autodiscover=None if autodiscover is None else _absolute(autodiscover),
            )
        )
    return tuple(out)


def _mx(entry: Table) -> tuple[MxRecord, ...]:
    out: list[MxRecord] = []
    for index, item in enumerate(entry.array("mx") or []):
        if not isinstance(item, dict):
            raise entry.error(
                "mx",
                f"item {index + 1} must be a table ({{ host = ..., preference = 10 }}), got {type_name(item)}",
            )
        record = Table(entry.doc, (*entry.key, "mx", index), item)
        record.check_keys(MX_KEYS)
        out.append(
            MxRecord(
                preference=record.integer("preference", 10, low=0, high=65535),
                host=_absolute(record.required_string("host")),
            )
        )
    return tuple(out)


def _directory(table: Table | None, base_dir: Path) -> RoutingDirectory | None:
    if table is None:
        return None
    table.check_keys(ROUTING_KEYS)
    url = table.required_string("url")
    if urlsplit(url).scheme not in ("ldap", "ldaps"):
        raise table.error("url", f'"{url}" must start with ldap:// or ldaps://')
    password = table.secret_ref("bind_password")
    ca_file = table.string("ca_file")
    try:
        bind_password = None if password is None else make_secret(password, base_dir)
    except ValueError as exc:
        raise table.error("bind_password", str(exc)) from None
    legacy, target = table.required_string("legacy_value"), table.required_string("target_value")
    if legacy == target:
        raise table.error("target_value", "is the same as legacy_value: the switch would change nothing")
    return RoutingDirectory(
        url=url,
        base=table.required_string("base"),
        attribute=table.required_string("attribute"),
        legacy_value=legacy,
        target_value=target,
        match=table.string("match") or "mail",
        bind_dn=table.string("bind_dn"),
        bind_password=bind_password,
        starttls=table.boolean("starttls", False),
        tls_verify=table.boolean("tls_verify", True),
        ca_file=None if ca_file is None else str(resolve_path(base_dir, ca_file)),
        timeout=table.positive_number("timeout", 30.0),
    )

"""What every DNS check shares: the plan's ``[dns]`` inputs, and queries asked once per run.

Content (MX, SPF, DMARC, MTA-STS, autodiscover) is read from the resolver: it is what senders and
clients see. TTLs and agreement are read from every authoritative server of the zone, asked
directly. Each answer is a run-wide fact, so checks asking the same question share one query, and a
server that does not answer fails every check that needed it, with the same reason.
"""

from __future__ import annotations

import fnmatch
import ipaddress

import dns.rdatatype
import dns.rdtypes.txtbase
import dns.rrset

from checks.context import CheckContext
from checks.dnsquery import Answer, Server, parse_server, query, system_resolver
from checks.model import Severity
from checks.registry import SkipCheck
from runners.errors import ProtocolError
from runners.plan.readiness_parts import DnsSettings

#: Per-try cap: a dead server must cost seconds, not the whole check deadline.
MAX_QUERY_TIMEOUT = 2.0


def settings(ctx: CheckContext) -> DnsSettings:
    dns_settings = ctx.plan.readiness.dns
    if dns_settings is None:
        raise SkipCheck("no [dns] section in the plan")
    return dns_settings


def domains(ctx: CheckContext) -> tuple[str, ...]:
    """``[dns] domains``, else the domains of the target addresses."""
    names = settings(ctx).domains or ctx.plan.target_domains
    if not names:
        raise SkipCheck("no mail domains: set [dns] domains or give target addresses with a domain")
    return names


def phase_severity(ctx: CheckContext) -> Severity:
    """Warning before the cutover; blocker after it, when it is broken mail flow."""
    return Severity.BLOCKER if ctx.phase == "post" else Severity.WARNING


def query_timeout(ctx: CheckContext) -> float:
    # Two tries must fit well inside the check's own deadline.
    return min(MAX_QUERY_TIMEOUT, ctx.timeout / 10)


def resolver(ctx: CheckContext) -> Server:
    configured = settings(ctx).resolver
    return parse_server(configured) if configured else system_resolver()


def resolve(ctx: CheckContext, name: str, rdtype: str) -> Answer:
    """The resolver's answer (recursion desired), asked once per run."""
    server = resolver(ctx)
    return _ask(ctx, server, name, rdtype, authoritative=False)


def _ask(ctx: CheckContext, server: Server, name: str, rdtype: str, *, authoritative: bool) -> Answer:
    def compute() -> Answer:
        with ctx.server(server.name):
            return query(server, name, rdtype, timeout=query_timeout(ctx), authoritative=authoritative)

    kind = "auth" if authoritative else "rd"
    return ctx.fact(f"dns:{kind}:{server}:{name.lower()}:{rdtype}", compute)


def zone_servers(ctx: CheckContext, domain: str) -> tuple[str, tuple[Server, ...]]:
    """The zone holding ``domain`` and its authoritative servers (``[dns] nameservers`` first)."""
    return ctx.fact(f"dns:zone:{domain}", lambda: _zone_servers(ctx, domain))


def _zone_servers(ctx: CheckContext, domain: str) -> tuple[str, tuple[Server, ...]]:
    configured = settings(ctx).nameservers
    for zone in sorted(configured, key=len, reverse=True):  # the closest enclosing zone wins
        if domain == zone or domain.endswith("." + zone):
            return zone, tuple(parse_server(s) for s in configured[zone])
    zone = _zone_of(ctx, domain)
    ns = resolve(ctx, zone, "NS")
    hosts = sorted(host(r.target) for r in ns.rrset or ())
    if not hosts:
        raise ProtocolError(resolver(ctx).name, f"NS {zone}", f"no NS records\n{ns.evidence}")
    servers: list[Server] = []
    for name in hosts:
        # IPv4 first: many migration hosts have no IPv6 route, and one address per server suffices.
        for rdtype in ("A", "AAAA"):
            addresses = resolve(ctx, name, rdtype).rrset
            if addresses:
                servers += [Server(r.address) for r in addresses]
                break
        else:
            raise ProtocolError(
                resolver(ctx).name, f"A {name}", f"nameserver {name} of {zone} has no address"
            )
    return zone, tuple(dict.fromkeys(servers))


def _zone_of(ctx: CheckContext, domain: str) -> str:
    """The apex of the zone holding ``domain``: the owner of the SOA the resolver returns."""
    answer = resolve(ctx, domain, "SOA")
    if answer.rrset is not None:
        return host(answer.rrset.name)
    # Below the apex the SOA comes in the authority section; ask the parent names instead.
    labels = domain.split(".")
    for cut in range(1, len(labels) - 1):
        parent = ".".join(labels[cut:])
        found = resolve(ctx, parent, "SOA").rrset
        if found is not None:
            return host(found.name)
    raise ProtocolError(resolver(ctx).name, f"SOA {domain}", f"no zone found for {domain}\n{answer.evidence}")


def authoritative(ctx: CheckContext, domain: str, name: str, rdtype: str) -> list[Answer]:
    """Every authoritative server's answer to ``name``/``rdtype`` (for the zone of ``domain``)."""
    _zone, servers = zone_servers(ctx, domain)
    return [_ask(ctx, server, name, rdtype, authoritative=True) for server in servers]


def evidence(*answers: Answer) -> str:
    return "\n".join(a.evidence for a in answers)


def host(name: object) -> str:
    """A DNS name as written in patterns: lower case, no trailing dot."""
    return str(name).lower().rstrip(".")


def matches(hostname: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(hostname, pattern) for pattern in patterns)


def is_ip_literal(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    return True


def mx_records(answer: Answer) -> list[tuple[int, str]]:
    """(preference, host) of the MX answer, best first; the null MX shows as host ``""``."""
    rrset = answer.rrset
    if rrset is None or rrset.rdtype != dns.rdatatype.MX:
        return []
    return sorted((int(r.preference), host(r.exchange)) for r in rrset)


def txt_strings(rrset: dns.rrset.RRset) -> list[str]:
    """Each TXT record's character-strings joined, as SPF, DMARC and MTA-STS read them."""
    return [
        b"".join(rdata.strings).decode("utf-8", "replace")
        for rdata in rrset
        if isinstance(rdata, dns.rdtypes.txtbase.TXTBase)
    ]

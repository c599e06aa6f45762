"""Checks that ask every authoritative server directly: do they agree, and are the TTLs low enough.

Servers that disagree on MX are a blocker in every phase: senders pick a server at random, so
mail goes to two places. Other disagreements are warnings before the cutover, blockers after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.rdatatype

from checks.context import CheckContext
from checks.dnsquery import Answer
from checks.families.dns_common import (
    authoritative,
    domains,
    evidence,
    phase_severity,
    settings,
    txt_strings,
    zone_servers,
)
from checks.model import Finding, Severity
from checks.registry import check

NS_ID = "DNS-NS-003"
TTL_ID = "DNS-TTL-004"

#: What every authoritative server must say alike: (label, name, type). The autodiscover name is
#: asked as A so that a CNAME and an A record both show (the comparison is of the name's own records).
COMPARED = (
    ("MX", "{domain}", "MX"),
    ("SPF", "{domain}", "TXT"),
    ("DMARC", "_dmarc.{domain}", "TXT"),
    ("MTA-STS", "_mta-sts.{domain}", "TXT"),
    ("autodiscover", "autodiscover.{domain}", "A"),
)


def own_records(answer: Answer, label: str = "") -> list[str]:
    """The records at the name asked for, as sorted text; for SPF only the ``v=spf1`` strings."""
    own = answer.own
    if own is None:
        return []
    if label == "SPF":
        return sorted(txt for txt in txt_strings(own) if txt.lower().startswith("v=spf1"))
    return sorted(r.to_text() for r in own)


@check(NS_ID, "All authoritative servers agree", category="dns")
def servers_agree(ctx: CheckContext) -> Iterator[Finding]:
    settings(ctx)
    severity = phase_severity(ctx)
    for domain in domains(ctx):
        zone, servers = zone_servers(ctx, domain)
        problems: list[Finding] = []
        for label, template, rdtype in COMPARED:
            answers = authoritative(ctx, domain, template.format(domain=domain), rdtype)
            said = {str(a.server): own_records(a, label) for a in answers}
            if len({tuple(v) for v in said.values()}) > 1:
                problems.append(
                    Finding(
                        NS_ID,
                        Severity.BLOCKER if label == "MX" else severity,
                        "domain",
                        domain,
                        f"Authoritative servers disagree on {label}",
                        observed="; ".join(f"{s} said {', '.join(v) or 'nothing'}" for s, v in said.items()),
                        expected="the same records on every authoritative server",
                        evidence=evidence(*answers),
                        remediation=_SYNC_MX if label == "MX" else _SYNC,
                        key=label,
                    )
                )
        soa = authoritative(ctx, domain, zone, "SOA")
        serials = {str(a.server): _serial(a) for a in soa}
        if len(set(serials.values())) > 1:
            problems.append(
                Finding(
                    NS_ID,
                    severity,
                    "domain",
                    domain,
                    f"Authoritative servers serve different versions of {zone}",
                    observed="; ".join(f"{s} serial {n}" for s, n in serials.items()),
                    expected="one SOA serial on every authoritative server",
                    evidence=evidence(*soa),
                    remediation=_SYNC,
                    key="SOA",
                )
            )
        if problems:
            yield from problems
            continue
        yield Finding(
            NS_ID,
            Severity.PASS,
            "domain",
            domain,
            "All authoritative servers agree",
            observed=f"{len(servers)} server(s) of {zone}: {', '.join(str(s) for s in servers)}; "
            f"SOA serial {next(iter(serials.values()), '-')}",
            evidence=evidence(*soa),
        )


_SYNC = (
    "Make every authoritative server serve the same zone: check zone transfers (NOTIFY, allowed "
    "transfer sources) or update the records at every DNS provider that hosts the zone."
)


_SYNC_MX = _SYNC + " Until then mail for the domain goes to two places, depending on the server asked."


def _serial(answer: Answer) -> int | None:
    own = answer.own
    return int(own[0].serial) if own is not None and own.rdtype == dns.rdatatype.SOA else None


@check(TTL_ID, "MX and autodiscover TTLs lowered before the cutover", category="dns", phase="pre")
def ttl_lowered(ctx: CheckContext) -> Iterator[Finding]:
    max_ttl = settings(ctx).max_ttl
    for domain in domains(ctx):
        seen: list[str] = []
        asked: list[Answer] = []
        problems: list[Finding] = []
        for label, name, rdtype in (("MX", domain, "MX"), ("autodiscover", f"autodiscover.{domain}", "A")):
            answers = authoritative(ctx, domain, name, rdtype)
            asked += answers
            ttls = {str(a.server): a.own.ttl for a in answers if a.own is not None}
            if not ttls:
                continue
            highest = max(ttls.values())
            seen.append(f"{label} {highest} s")
            if highest > max_ttl:
                problems.append(
                    Finding(
                        TTL_ID,
                        Severity.WARNING,
                        "domain",
                        domain,
                        f"{label} TTL too high for the cutover",
                        observed="; ".join(f"{s}: TTL {t} s" for s, t in ttls.items()),
                        expected=f"TTL ≤ {max_ttl} s on every authoritative server",
                        evidence=evidence(*answers),
                        remediation=(
                            f"Lower the {label} TTL to {max_ttl} s at least {highest} s (the old TTL) "
                            "before the cutover, so that caches expire in time; restore it afterwards."
                        ),
                        key=label,
                    )
                )
        if problems:
            yield from problems
        else:
            yield Finding(
                TTL_ID,
                Severity.PASS,
                "domain",
                domain,
                "TTLs low enough for the cutover",
                observed="; ".join(seen) or "no MX or autodiscover record",
                expected=f"TTL ≤ {max_ttl} s",
                evidence=evidence(*asked),
            )

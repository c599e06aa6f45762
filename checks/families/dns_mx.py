"""MX checks: is there a usable MX, and does it point where the cutover phase says it should."""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.dnsquery import Answer
from checks.families.dns_common import (
    domains,
    evidence,
    is_ip_literal,
    matches,
    mx_records,
    resolve,
    settings,
)
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check

MX_ID = "DNS-MX-001"
PHASE_ID = "DNS-CUT-002"


@check(MX_ID, "MX present and resolvable", category="dns")
def mx_present(ctx: CheckContext) -> Iterator[Finding]:
    for domain in domains(ctx):
        yield from _mx_findings(ctx, domain)


def _mx_findings(ctx: CheckContext, domain: str) -> Iterator[Finding]:
    answer = resolve(ctx, domain, "MX")
    records = mx_records(answer)

    def finding(severity: Severity, title: str, key: str = "", **text: str) -> Finding:
        text.setdefault("evidence", answer.evidence)
        return Finding(MX_ID, severity, "domain", domain, title, key=key, **text)

    if not records:
        yield finding(
            Severity.BLOCKER,
            "No MX record",
            "mx",
            observed="the domain does not exist (NXDOMAIN)" if answer.nxdomain else "no MX record",
            expected="at least one MX host with an address",
            remediation="Publish the MX of the platform that receives the domain's mail.",
        )
        return
    if records == [(0, "")]:
        yield finding(
            Severity.BLOCKER,
            "Null MX: the domain declares that it accepts no mail",
            "mx",
            observed="MX 0 . (RFC 7505 null MX)",
            expected="at least one MX host with an address",
            remediation="Replace the null MX with the MX of the platform that receives the domain's mail.",
        )
        return
    problems: list[Finding] = []
    usable: list[str] = []
    looked: list[Answer] = []  # every address lookup, for the evidence
    if any(name == "" for _, name in records):
        problems.append(
            finding(
                Severity.WARNING,
                "Null MX mixed with other MX records",
                "null-mx",
                observed="MX 0 . next to other MX records",
                expected="a null MX only as the domain's single MX (RFC 7505 §3)",
                remediation="Remove the null MX.",
            )
        )
    for _pref, name in records:
        if not name:
            continue
        if is_ip_literal(name):
            problems.append(
                finding(
                    Severity.WARNING,
                    "MX target is an IP address, not a host name",
                    name,
                    observed=f"MX points at {name}",
                    expected="a host name with A/AAAA records (RFC 5321 §5.1)",
                    remediation="Give the address a host name and point the MX at it.",
                )
            )
            continue
        lookups = _addresses(ctx, name)
        looked += lookups
        shown = evidence(answer, *lookups)
        if lookups[-1].rrset is None:
            problems.append(
                finding(
                    Severity.WARNING,
                    "MX host has no address",
                    name,
                    observed=f"{name} has no A or AAAA record",
                    expected="every MX host resolves",
                    evidence=shown,
                    remediation=f"Publish an A record for {name} or remove the MX.",
                )
            )
            continue
        usable.append(name)
        if lookups[0].alias is not None:
            problems.append(
                finding(
                    Severity.WARNING,
                    "MX target is a CNAME",
                    name,
                    observed=f"{name} is an alias of {lookups[0].alias[0].to_text()}",
                    expected="an MX target that is not an alias (RFC 2181 §10.3, RFC 5321 §5.1)",
                    evidence=shown,
                    remediation="Point the MX at the canonical host name; some senders refuse aliases.",
                )
            )
    if not usable:
        problems.append(
            finding(
                Severity.BLOCKER,
                "No usable MX",
                "mx",
                observed="no MX host has an address",
                expected="at least one MX host with an address",
                evidence=evidence(answer, *looked),
                remediation="Publish the MX of the platform that receives the domain's mail.",
            )
        )
    if problems:
        yield from problems
        return
    yield finding(
        Severity.PASS,
        "MX present and resolvable",
        observed=", ".join(f"{pref} {name}" for pref, name in records),
        evidence=evidence(answer, *looked),
    )


def _addresses(ctx: CheckContext, name: str) -> list[Answer]:
    """The A lookup, and the AAAA lookup when there is no A: the last one decides."""
    a = resolve(ctx, name, "A")
    return [a] if a.rrset is not None else [a, resolve(ctx, name, "AAAA")]


@check(PHASE_ID, "MX matches the cutover phase", category="dns")
def mx_phase(ctx: CheckContext) -> Iterator[Finding]:
    dns_settings = settings(ctx)
    post = ctx.phase == "post"
    if post and not dns_settings.target_mx:
        raise SkipCheck("no [dns] target_mx patterns for the post-cutover MX")
    if not post and not dns_settings.legacy_mx:
        raise SkipCheck("no [dns] legacy_mx patterns for the pre-cutover MX")
    for domain in domains(ctx):
        yield from _phase_findings(ctx, domain, post)


def _phase_findings(ctx: CheckContext, domain: str, post: bool) -> Iterator[Finding]:
    dns_settings = settings(ctx)
    answer = resolve(ctx, domain, "MX")
    hosts = [name for _, name in mx_records(answer) if name]
    found = ", ".join(hosts)

    def finding(severity: Severity, title: str, key: str = "", **text: str) -> Finding:
        return Finding(PHASE_ID, severity, "domain", domain, title, key=key, evidence=answer.evidence, **text)

    if not hosts:
        yield finding(Severity.INFO, "No MX host to classify (see DNS-MX-001)")
        return
    if post:
        stray = [h for h in hosts if not matches(h, dns_settings.target_mx)]
        if stray:
            yield finding(
                Severity.BLOCKER,
                "MX does not point only at the target",
                "mx",
                observed=f"not target: {', '.join(stray)}",
                expected=f"only hosts matching {', '.join(dns_settings.target_mx)}",
                remediation="Publish the target's MX and remove every other MX record.",
            )
        else:
            yield finding(Severity.PASS, "MX points at the target", observed=found)
        return
    legacy = [h for h in hosts if matches(h, dns_settings.legacy_mx)]
    early = [h for h in hosts if h not in legacy and matches(h, dns_settings.target_mx)]
    unknown = [h for h in hosts if h not in legacy and h not in early]
    # Before the cutover mail must keep landing on the legacy platform. Neither case stops the
    # migration from starting, so both are warnings; after the cutover the same MX is a blocker.
    if early:
        yield finding(
            Severity.WARNING,
            "MX already points at the target before the cutover",
            "early",
            observed=f"target MX: {', '.join(early)}",
            expected=f"only hosts matching {', '.join(dns_settings.legacy_mx)} until the cutover",
            remediation=(
                "New mail already lands on the target while the mailboxes are still on the "
                "legacy platform: keep the legacy MX until the cutover, or run the check with "
                "--phase post if the cutover has happened."
            ),
        )
    if unknown:
        yield finding(
            Severity.WARNING,
            "MX host matches neither the legacy nor the target patterns",
            "unknown",
            observed=f"unclassified: {', '.join(unknown)}",
            expected=f"hosts matching {', '.join(dns_settings.legacy_mx)}",
            remediation=(
                "Add the host to [dns] legacy_mx if it belongs to the legacy platform (a filtering "
                "gateway, say), or fix the MX."
            ),
        )
    if not early and not unknown:
        yield finding(Severity.PASS, "MX points at the legacy platform", observed=found)

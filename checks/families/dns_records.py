"""Records the cutover must not lose: DMARC (DNS-DMARC-006) and autodiscover (DNS-AUTOD-008).

A domain without its own DMARC record is judged by its organisational domain's record (RFC 7489
6.6.3; ``checks.orgdomain``), as receivers do: its ``sp=`` policy, else its ``p=``.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.dnsquery import Answer
from checks.families.dns_common import domains, evidence, phase_severity, resolve, txt_strings
from checks.model import Finding, Severity
from checks.orgdomain import organisational_domain
from checks.registry import SkipCheck, check

DMARC_ID = "DNS-DMARC-006"
AUTOD_ID = "DNS-AUTOD-008"
DMARC_POLICIES = ("none", "quarantine", "reject")
EXCHANGE_TARGETS = ("ews", "graph")


def parse_dmarc(record: str) -> tuple[dict[str, str], str]:
    """The tags of a DMARC record and what is wrong with it ("" when valid; RFC 7489 §6.3)."""
    parts = [p.strip() for p in record.split(";") if p.strip()]
    tags: dict[str, str] = {}
    for part in parts:
        name, eq, value = part.partition("=")
        if not eq:
            return tags, f"{part!r} is not a tag=value pair"
        tags.setdefault(name.strip().lower(), value.strip())
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        return tags, "the record must start with v=DMARC1"
    if "p" not in tags:
        return tags, "no p= policy tag"
    if tags["p"].lower() not in DMARC_POLICIES:
        return tags, f"p={tags['p']} is not none, quarantine or reject"
    return tags, ""


@check(DMARC_ID, "DMARC record present and valid", category="dns")
def dmarc_valid(ctx: CheckContext) -> Iterator[Finding]:
    for domain in domains(ctx):
        yield from _dmarc_findings(ctx, domain)


def dmarc_records(answer: Answer) -> list[str]:
    return [t for t in txt_strings(answer.rrset) if t[:8].lower() == "v=dmarc1"] if answer.rrset else []


def _dmarc_findings(ctx: CheckContext, domain: str) -> Iterator[Finding]:
    name = f"_dmarc.{domain}"
    answer = resolve(ctx, name, "TXT")
    records = dmarc_records(answer)
    asked = [answer]
    organisational = organisational_domain(domain)
    if not records and organisational != domain:
        # RFC 7489 6.6.3: receivers fall back to the organisational domain's record (its sp=).
        name = f"_dmarc.{organisational}"
        asked.append(resolve(ctx, name, "TXT"))
        records = dmarc_records(asked[-1])
    inherited = f" (inherited from {organisational})" if name != f"_dmarc.{domain}" else ""

    def finding(severity: Severity, title: str, key: str = "", **text: str) -> Finding:
        return Finding(
            DMARC_ID, severity, "domain", domain, title, key=key, evidence=evidence(*asked), **text
        )

    remediation = f'Publish one TXT record at _dmarc.{domain} or _dmarc.{organisational}: "v=DMARC1; p=none; rua=mailto:…" at least.'
    if not records:
        where = f"_dmarc.{domain}"
        if organisational != domain:
            where += f" nor at _dmarc.{organisational} (its organisational domain)"
        yield finding(
            Severity.WARNING,
            "No DMARC record",
            "record",
            observed=f"no v=DMARC1 TXT record at {where}",
            expected="a DMARC record with a p= policy",
            remediation=remediation,
        )
        return
    if len(records) > 1:
        yield finding(
            Severity.WARNING,
            "Several DMARC records: receivers ignore them all" + inherited,
            "record",
            observed=f"{len(records)} v=DMARC1 records at {name}",
            expected="exactly one (RFC 7489 §6.6.3)",
            remediation="Keep one record.",
        )
        return
    tags, problem = parse_dmarc(records[0])
    # A subdomain without its own record gets the organisational domain's sp= (else its p=).
    policy = (tags.get("sp") or tags.get("p", "")).lower() if inherited else tags.get("p", "").lower()
    shown = f"{name}: {records[0]}"
    if problem:
        yield finding(
            Severity.WARNING,
            "DMARC record invalid" + inherited,
            "record",
            observed=problem,
            expected="v=DMARC1; p=none|quarantine|reject",
            remediation=remediation,
        )
    elif policy == "none":
        yield finding(Severity.INFO, "DMARC policy is none: monitoring only" + inherited, observed=shown)
    else:
        yield finding(Severity.PASS, "DMARC record valid" + inherited, observed=shown)


@check(AUTOD_ID, "Autodiscover published for the Exchange target", category="dns")
def autodiscover_present(ctx: CheckContext) -> Iterator[Finding]:
    kind = ctx.plan.target.type
    if kind not in EXCHANGE_TARGETS:
        raise SkipCheck(f"the target is {kind}: autodiscover is for Exchange targets (ews, graph)")
    for domain in domains(ctx):
        yield _autodiscover_finding(ctx, domain)


#: Where clients look, in order: (label, name, type). An on-premises Exchange often publishes
#: autodiscover as a plain A record: clients use it too.
AUTODISCOVER_LOOKUPS = (
    ("CNAME", "autodiscover.{domain}", "CNAME"),
    ("SRV", "_autodiscover._tcp.{domain}", "SRV"),
    ("A record", "autodiscover.{domain}", "A"),
)


def _autodiscover_finding(ctx: CheckContext, domain: str) -> Finding:
    asked: list[Answer] = []
    for label, template, rdtype in AUTODISCOVER_LOOKUPS:
        answer = resolve(ctx, template.format(domain=domain), rdtype)
        asked.append(answer)
        if answer.rrset is None:
            continue  # not there: the next place clients look is asked only now
        if rdtype == "CNAME":
            observed = f"autodiscover.{domain} → {answer.rrset[0].to_text()}"
        else:
            observed = ", ".join(r.to_text() for r in answer.rrset)
        return Finding(
            AUTOD_ID,
            Severity.PASS,
            "domain",
            domain,
            f"Autodiscover {label} present",
            observed=observed,
            evidence=evidence(*asked),
        )
    return Finding(
        AUTOD_ID,
        phase_severity(ctx),
        "domain",
        domain,
        "No autodiscover record",
        observed=f"no CNAME or A at autodiscover.{domain}, no SRV at _autodiscover._tcp.{domain}",
        expected="autodiscover CNAME (or _autodiscover._tcp SRV) pointing at the target",
        evidence=evidence(*asked),
        remediation=f"Publish autodiscover.{domain} CNAME to the target's autodiscover host; Outlook "
        "and mobile clients cannot find the new mailboxes without it.",
        key="autodiscover",
    )

"""DNS-SPF-005: the SPF record exists, lets the target send, and stays within the lookup limits.

The count is static, over the whole record tree, as RFC 7208 §4.6.4 limits evaluation: ``include``,
``a``, ``mx``, ``ptr``, ``exists`` and ``redirect`` each cost one DNS lookup, at most 10 in all; at
most 2 of them may be void (NXDOMAIN or no records). A receiver that hits either limit returns
permerror, and the domain's mail fails SPF everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from checks.context import CheckContext
from checks.families.dns_common import domains, host, mx_records, resolve, settings, txt_strings
from checks.model import Finding, Severity
from checks.registry import check

SPF_ID = "DNS-SPF-005"
MAX_LOOKUPS = 10
MAX_VOID = 2
#: Names one ``mx`` mechanism may yield (RFC 7208 §4.6.4).
MAX_MX_NAMES = 10
#: Stop following the tree here: the verdict is long settled, and the queries must stay few.
STOP_AT = 30
LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists")
OTHER_TERMS = ("all", "ip4", "ip6")


@dataclass
class SpfTree:
    """What walking a domain's SPF record and everything it includes found."""

    lookups: int = 0
    voids: int = 0
    #: Every domain reached through ``include:`` or ``redirect=``.
    included: set[str] = field(default_factory=set)
    #: What makes a receiver return permerror, besides the limits.
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The records read, as the resolver returned them.
    evidence: list[str] = field(default_factory=list)


def spf_records(ctx: CheckContext, domain: str) -> tuple[list[str], str, bool]:
    """The ``v=spf1`` records of ``domain``, the resolver's answer, and whether the lookup was void."""
    answer = resolve(ctx, domain, "TXT")
    rrset = answer.rrset
    texts = txt_strings(rrset) if rrset is not None else []
    records = [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    return records, answer.evidence, rrset is None


def walk(ctx: CheckContext, domain: str, tree: SpfTree, trail: tuple[str, ...] = ()) -> None:
    """Count the lookups of ``domain``'s SPF record and, recursively, of what it includes."""
    records, shown, _void = spf_records(ctx, domain)
    tree.evidence.append(shown)
    if len(records) != 1:
        if trail:  # the top-level record's absence is reported by the caller
            what = "no SPF record" if not records else f"{len(records)} SPF records"
            tree.errors.append(f"{' → '.join(trail)} → {domain}: {what}")
        return
    terms = records[0].split()[1:]
    has_all = any(t.lstrip("+-~?").lower() == "all" for t in terms)
    for term in terms:
        if tree.lookups >= STOP_AT:
            return
        _term(ctx, domain, term, has_all, tree, (*trail, domain))


def _term(
    ctx: CheckContext, domain: str, term: str, has_all: bool, tree: SpfTree, trail: tuple[str, ...]
) -> None:
    if "=" in term and ":" not in term.split("=", 1)[0]:
        name, _, value = term.partition("=")
        if name.lower() == "redirect" and not has_all:  # with "all" present redirect is never used
            tree.lookups += 1
            _follow(ctx, value, tree, trail)
        return  # exp= and unknown modifiers cost nothing (RFC 7208 §6)
    mechanism = term.lstrip("+-~?")
    name, _, target = mechanism.partition(":")
    name = name.partition("/")[0].lower()  # a/24, mx/24: the prefix length costs nothing
    target = target.split("/", 1)[0] if target else ""
    if name in OTHER_TERMS:
        return
    if name not in LOOKUP_TERMS:
        tree.errors.append(f"{domain}: unknown mechanism {term!r}")
        return
    tree.lookups += 1
    if name == "include":
        _follow(ctx, target, tree, trail)
    elif name == "ptr":
        tree.notes.append(f"{domain}: ptr is slow and discouraged (RFC 7208 §5.5)")
    elif "%{" in target or name == "exists":
        return  # macros expand per message: nothing to look up ahead of time
    elif name == "a":
        name_ = target or domain
        found = resolve(ctx, name_, "A").rrset or resolve(ctx, name_, "AAAA").rrset
        tree.voids += found is None
    elif name == "mx":
        answer = resolve(ctx, target or domain, "MX")
        hosts = [h for _, h in mx_records(answer) if h]
        tree.voids += answer.rrset is None
        if len(hosts) > MAX_MX_NAMES:
            tree.errors.append(f"{domain}: mx:{target or domain} has {len(hosts)} MX names (at most 10)")


def _follow(ctx: CheckContext, target: str, tree: SpfTree, trail: tuple[str, ...]) -> None:
    if not target or "%{" in target:
        return
    name = host(target)
    tree.included.add(name)
    if name in trail:
        tree.errors.append(f"{' → '.join(trail)} → {name}: include loop")
        return
    _records, _shown, void = spf_records(ctx, name)
    tree.voids += void
    walk(ctx, name, tree, trail)


@check(SPF_ID, "SPF present, includes the target, within the lookup limits", category="dns")
def spf_valid(ctx: CheckContext) -> Iterator[Finding]:
    wanted = settings(ctx).spf_includes
    for domain in domains(ctx):
        yield from _spf_findings(ctx, domain, wanted)


def _spf_findings(ctx: CheckContext, domain: str, wanted: tuple[str, ...]) -> Iterator[Finding]:
    records, shown, _void = spf_records(ctx, domain)

    def finding(severity: Severity, title: str, key: str, evidence: str, **text: str) -> Finding:
        return Finding(SPF_ID, severity, "domain", domain, title, key=key, evidence=evidence, **text)

    if not records:
        yield finding(
            Severity.BLOCKER if wanted else Severity.WARNING,
            "No SPF record",
            "record",
            shown,
            observed="no TXT record starting with v=spf1",
            expected="one SPF record" + (f" including {', '.join(wanted)}" if wanted else ""),
            remediation="Publish an SPF record that includes the target's senders.",
        )
        return
    tree = SpfTree()
    walk(ctx, domain, tree)
    trail = "\n".join(tree.evidence)
    problems: list[Finding] = []
    if len(records) > 1:
        tree.errors.insert(0, f"{domain}: {len(records)} SPF records (RFC 7208 §4.5: permerror)")
    if tree.errors:
        problems.append(
            finding(
                Severity.BLOCKER,
                "SPF record fails with permerror",
                "permerror",
                trail,
                observed="; ".join(tree.errors),
                expected="one valid SPF record per domain, every include resolvable",
                remediation="Merge or fix the records so that receivers can evaluate them.",
            )
        )
    if tree.lookups > MAX_LOOKUPS:
        more = "at least " if tree.lookups >= STOP_AT else ""
        problems.append(
            finding(
                Severity.BLOCKER,
                "SPF needs more than 10 DNS lookups",
                "lookups",
                trail,
                observed=f"{more}{tree.lookups} DNS lookups",
                expected=f"at most {MAX_LOOKUPS} (RFC 7208 §4.6.4)",
                remediation="Remove stale includes (the legacy platform's, once it no longer sends) "
                "or replace a/mx mechanisms by ip4/ip6 ranges.",
            )
        )
    if tree.voids > MAX_VOID:
        problems.append(
            finding(
                Severity.BLOCKER,
                "SPF has more than 2 void lookups",
                "void",
                trail,
                observed=f"{tree.voids} lookups return no record",
                expected=f"at most {MAX_VOID} (RFC 7208 §4.6.4)",
                remediation="Remove the mechanisms that name hosts or domains without records.",
            )
        )
    missing = [w for w in wanted if w not in tree.included]
    if missing:
        problems.append(
            finding(
                Severity.WARNING,
                "SPF does not include the target",
                "include",
                trail,
                observed=f"missing include:{', include:'.join(missing)}",
                expected=f"include:{', include:'.join(wanted)}",
                remediation="Add the target's include before the cutover; mail the target sends "
                "fails SPF until then.",
            )
        )
    if problems:
        yield from problems
        return
    notes = f"; {'; '.join(tree.notes)}" if tree.notes else ""
    yield finding(
        Severity.PASS,
        "SPF valid",
        "",
        trail,
        observed=f"{tree.lookups} of {MAX_LOOKUPS} DNS lookups, {tree.voids} of {MAX_VOID} void{notes}",
    )

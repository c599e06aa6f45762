"""Directory hygiene: duplicate addresses, address formats on the target, catch-all addresses."""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.directory_people import (
    UPN,
    Directory,
    Person,
    directory,
    domain_of,
    evidence,
    optional_directory,
    roles,
)
from checks.families.directory_rules import object_problems
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check

DUP = "DIR-DUP-003"
FMT = "DIR-FMT-004"
CATCH = "DIR-CATCH-005"


@check(DUP, "No address owned by two directory objects", category="directory")
def duplicate_addresses(ctx: CheckContext) -> Iterator[Finding]:
    sides = [d for d in (optional_directory(ctx, "target"), optional_directory(ctx, "source")) if d]
    if not sides:
        raise SkipCheck("no [directory.source] or [directory.target] section in the plan")
    for side in sides:
        yield from _duplicates(side)


def _duplicates(d: Directory) -> Iterator[Finding]:
    # The target refuses duplicates (directory sync stops on them); on the source they only
    # make delivery ambiguous, which the migration inherits.
    severity = Severity.BLOCKER if d.side == "target" else Severity.WARNING
    for address, owners in sorted(d.owners.items()):
        if len(owners) == 1:
            yield Finding(
                DUP, Severity.PASS, "address", address, f"Address has one owner ({d.side})",
                observed=owners[0].dn, key=d.side,
            )  # fmt: skip
            continue
        dns = "; ".join(o.dn for o in owners)
        yield Finding(
            DUP, severity, "address", address, f"Address owned by {len(owners)} {d.side} objects",
            observed=f"{address} (compared case-insensitively) is held by {dns}",
            expected="one owner per address",
            evidence=evidence(*owners), key=d.side,
            remediation=f"Remove {address} from all but one of them in the {d.side} directory"
            + (" before directory sync: the target refuses duplicate proxy addresses." if d.side == "target"
               else "; decide which mailbox receives it after the cutover."),
        )  # fmt: skip


@check(FMT, "Target addresses and UPNs are well-formed", category="directory")
def target_formats(ctx: CheckContext) -> Iterator[Finding]:
    target = directory(ctx, "target")
    r = roles(target.settings)
    ad = target.settings.preset == "ad"
    # In AD the alias attribute holds typed proxies (SMTP:, X500:); elsewhere plain addresses.
    plain = r["mail"] + (() if ad else r["aliases"])
    proxies = r["aliases"] if ad else ()
    for person in target.people:
        problems = list(object_problems(person.entry, plain, proxies, UPN if ad else ""))
        if not problems:
            yield Finding(
                FMT, Severity.PASS, "entry", person.dn, "Addresses well-formed", observed=person.label
            )
        for p in problems:
            yield Finding(
                FMT, Severity.BLOCKER, "entry", person.dn, f"Invalid {p.attribute} value",
                observed=f"{p.attribute}: {p.value!r}: {'; '.join(p.problems)}",
                expected="IdFix-clean values: no blanks or spaces, allowed characters only, a routable "
                "domain with a dot, UPN at most 113 characters (fewer than 64 before the @, 48 after), "
                "proxy addresses at most 256",
                evidence=evidence(person), key=f"{p.attribute}={p.value}",
                remediation=f"Correct {p.attribute} on {person.dn} before directory sync and migration; "
                "IdFix reports the same errors and can fix them in bulk.",
            )  # fmt: skip


@check(CATCH, "Catch-all addresses in the source directory", category="directory")
def catch_alls(ctx: CheckContext) -> Iterator[Finding]:
    source = directory(ctx, "source")
    holders: dict[str, list[Person]] = {}
    domains: set[str] = set()
    for person in source.people:
        domains.update(domain_of(a) for a in person.addresses)
        for value in person.catch_alls:
            holders.setdefault(value, []).append(person)
    caught = {domain_of(v) for v in holders}
    for value, people in sorted(holders.items()):
        yield Finding(
            CATCH, Severity.BLOCKER, "address", value, "Catch-all address in the source directory",
            observed=f"{value} on {'; '.join(p.dn for p in people)}: accepts mail for any local part",
            expected="a recorded design for catch-all mail on the target",
            evidence=evidence(*people),
            remediation=(
                "The target rejects unknown recipients (Exchange Online: Directory-Based Edge Blocking), so "
                "this catch-all stops working at the cutover. Decide the design (accepted domain as "
                "InternalRelay + a dynamic group of valid recipients + a mail-flow rule redirecting the rest "
                "to a mailbox; or drop the catch-all and tell the senders) and record the decision as a "
                f'[[waivers]] entry: check = "{CATCH}", object = "{value}", reason, approved_by, expires.'
            ),
        )  # fmt: skip
    for domain in sorted(domains - caught):
        yield Finding(CATCH, Severity.PASS, "domain", domain, "No catch-all address for this domain")

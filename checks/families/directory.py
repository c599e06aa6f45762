"""Directory reconciliation: is every source user, address and mailbox there on the target?

DIR-ADDR-001 and DIR-MBX-002 are the "no user lost" blockers; DIR-STATUS-006 lists the source
accounts that need a decision instead of a migration (disabled, forward-only) and counts per domain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.directory_people import (
    Directory,
    Person,
    directory,
    domain_of,
    evidence,
    normalize,
    optional_directory,
    roles,
)
from checks.model import Finding, Severity
from checks.registry import check
from runners.plan.model import MailboxEntry

ADDR = "DIR-ADDR-001"
MBX = "DIR-MBX-002"
STATUS = "DIR-STATUS-006"


@check(ADDR, "Every active source address exists on the target", category="directory")
def addresses_on_target(ctx: CheckContext) -> Iterator[Finding]:
    source, target = directory(ctx, "source"), directory(ctx, "target")
    holders: dict[str, list[Person]] = {}
    for person in source.people:
        if person.active:  # disabled accounts are DIR-STATUS-006's business
            for address in person.addresses:
                holders.setdefault(address, []).append(person)
    attrs = "/".join(a for role in ("mail", "aliases") for a in roles(target.settings)[role])
    for address, people in sorted(holders.items()):
        owners = target.owners.get(address, ())
        if owners:
            yield Finding(
                ADDR, Severity.PASS, "address", address, "Source address exists on the target",
                observed="owned by " + "; ".join(o.dn for o in owners),
            )  # fmt: skip
            continue
        yield Finding(
            ADDR, Severity.BLOCKER, "address", address, "Source address missing on the target",
            observed=f"{address} ({', '.join(p.key for p in people)}) is in no {attrs} under {target.where}",
            expected="every active source address on a target object",
            evidence=evidence(*people),
            remediation=(
                f"Add smtp:{address} to the proxyAddresses of {people[0].label}'s target object (or create a "
                "mail user or contact holding it) before the cutover: from then on, mail to it bounces."
            ),
        )  # fmt: skip


@check(MBX, "Every active source mailbox has a mailbox-enabled target", category="directory")
def mailboxes_on_target(ctx: CheckContext) -> Iterator[Finding]:
    target = directory(ctx, "target")
    source = optional_directory(ctx, "source")
    seen: set[str] = set()
    wanted: dict[str, list[Person]] = {}
    for person in source.people if source else ():
        if person.active and person.mailbox_enabled and person.primary:
            wanted.setdefault(person.primary, []).append(person)
    for primary, people in sorted(wanted.items()):
        seen.add(primary)
        objects = _target_objects(target, people[0].addresses)
        yield _mailbox_finding(primary, objects, target, evidence(*people), f"source {people[0].key}")
    for entry in ctx.plan.mailboxes:
        wanted_id = normalize(entry.target) if "@" in entry.target else entry.target.lower()
        if wanted_id in seen:
            continue
        seen.add(wanted_id)
        if "@" in entry.target:
            objects = _target_objects(target, (wanted_id,))
        else:  # a login name: look for the account itself
            objects = tuple(p for p in target.people if p.key.lower() == wanted_id)
        yield _mailbox_finding(wanted_id, objects, target, _plan_line(entry), f"plan mailbox {entry.source}")


def _target_objects(target: Directory, addresses: tuple[str, ...]) -> tuple[Person, ...]:
    """The target objects owning the primary address, else any of the others."""
    for address in addresses:
        owners = target.owners.get(address)
        if owners:
            return owners
    return ()


def _mailbox_finding(
    address: str, objects: tuple[Person, ...], target: Directory, origin: str, who: str
) -> Finding:
    marker = "any kind" if target.by_existence else "/".join(roles(target.settings)["mailbox"]) or "a mailbox"
    if any(o.mailbox_enabled for o in objects):
        dns = "; ".join(o.dn for o in objects if o.mailbox_enabled)
        if target.by_existence:
            return Finding(
                MBX, Severity.PASS, "mailbox", address, "Target object exists",
                observed=f"{dns} ({target.by_existence})",
            )  # fmt: skip
        return Finding(MBX, Severity.PASS, "mailbox", address, "Mailbox-enabled target object", observed=dns)
    if not objects:
        return Finding(
            MBX, Severity.BLOCKER, "mailbox", address, "No target object for a mailbox to migrate",
            observed=f"{who}: nothing under {target.where} owns {address}",
            expected=f"a mailbox-enabled target object ({marker}) owning {address}",
            evidence=origin,
            remediation="Create (or sync) the user on the target and enable its mailbox before the first wave.",
        )  # fmt: skip
    return Finding(
        MBX, Severity.BLOCKER, "mailbox", address, "Target object is not mailbox-enabled",
        observed=f"{who}: {'; '.join(o.dn for o in objects)} has no {marker}",
        expected=f"a mailbox-enabled target object ({marker}) owning {address}",
        evidence=f"{origin}\n\n{evidence(*objects)}",
        remediation="Enable the mailbox (Enable-Mailbox / Enable-RemoteMailbox, or assign a licence) before "
        "the first wave: the migration has nowhere to write.",
    )  # fmt: skip


def _plan_line(entry: MailboxEntry) -> str:
    where = f"{entry.origin}: " if entry.origin else ""
    return f"plan: {where}{entry.source} -> {entry.target} (wave {entry.wave})"


@check(STATUS, "Disabled and forward-only source accounts", category="directory")
def source_account_status(ctx: CheckContext) -> Iterator[Finding]:
    source = directory(ctx, "source")
    target = optional_directory(ctx, "target")
    counts: dict[str, Counter[str]] = {}
    for person in source.people:
        tally = counts.setdefault(person.domain or "(no address)", Counter())
        if not person.active:
            tally["disabled"] += 1
            yield Finding(
                STATUS, Severity.INFO, "mailbox", person.label, "Disabled source account",
                observed=f"{person.dn} is disabled", evidence=evidence(person), key=person.dn,
                remediation="Leave it out of the mailbox list, or migrate it as a shared mailbox; "
                "DIR-ADDR-001 does not require its addresses on the target.",
            )  # fmt: skip
        elif person.forward_only:
            tally["forward-only"] += 1
            yield Finding(
                STATUS, Severity.WARNING, "mailbox", person.label, "Forward-only source account",
                observed=f"no local mailbox; mail goes to {', '.join(person.forwards)}",
                expected="a decision: mail user or contact on the target, or a mailbox",
                evidence=evidence(person), key=person.dn,
                remediation="Create a mail user or contact on the target with the forwarding address as its "
                "external address (nothing to migrate), or give it a mailbox and a forwarding rule.",
            )  # fmt: skip
        else:
            tally["active"] += 1
            yield Finding(
                STATUS, Severity.PASS, "mailbox", person.label, "Active source account",
                observed=person.dn, key=person.dn,
            )  # fmt: skip
        if target is not None and person.active:
            missing = [a for a in person.addresses if a not in target.owners]
            tally["addresses"] += len(person.addresses)
            tally["missing"] += len(missing)
    if target is not None:
        for person in target.people:
            if person.mailbox_enabled and person.primary:
                counts.setdefault(domain_of(person.primary), Counter())["target mailboxes"] += 1
    for domain, tally in sorted(counts.items()):
        observed = f"source: {tally['active']} active, {tally['forward-only']} forward-only, {tally['disabled']} disabled"
        if target is not None:
            observed += (
                f"; target: {tally['target mailboxes']} mailbox-enabled; active source addresses: "
                f"{tally['addresses']}, {tally['missing']} missing on the target"
            )
        yield Finding(
            STATUS, Severity.INFO, "domain", domain, "Accounts per domain", observed=observed, key="counts"
        )

"""Helpdesk triage of one user, right now: "I can't log in" and "my mail is missing".

For one address: is it in the source and target directories, can we log in on both sides, where
does its migration stand per folder, and does the target hold everything the source holds at
this moment. Every step keeps its own answer (or the server's words) and never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from checks.families.directory_people import UPN, fetched_attributes, roles, to_person
from checks.ldapdir import any_of, equals, search
from runners.connectors.base import SourceSession, TargetSession
from runners.engine.sessions import open_source, open_target
from runners.errors import MigrationError, ProtocolError
from runners.plan.model import MailboxEntry, Plan
from runners.plan.readiness_model import DirectorySettings
from runners.state.mailbox_reads import MailboxDetail
from runners.state.store import StateStore
from runners.verify import MailboxCheck, verify_wave


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    #: True ok, False a problem, None not applicable / not configured.
    ok: bool | None
    detail: str


@dataclass(slots=True)
class Triage:
    query: str
    entry: MailboxEntry | None
    steps: list[Step] = field(default_factory=list)
    detail: MailboxDetail | None = None
    verify: MailboxCheck | None = None


def find_entry(plan: Plan, address: str) -> MailboxEntry | None:
    wanted = address.strip().lower()
    return next((m for m in plan.mailboxes if wanted in (m.source.lower(), m.target.lower())), None)


def triage(plan: Plan, address: str, *, compare: bool = True) -> Triage:
    result = Triage(address, find_entry(plan, address))
    entry = result.entry
    if entry is None:
        result.steps.append(Step("plan", False, f"{address} is not a mailbox of the plan (source or target)"))
        return result
    result.steps.append(Step("plan", True, f"{entry.source} → {entry.target}, wave {entry.wave}"))
    r = plan.readiness
    result.steps.append(_directory("source directory", r.source_directory, entry.source))
    result.steps.append(_directory("target directory", r.target_directory, entry.target))
    result.steps.append(_login("source login", lambda: open_source(plan.source, entry)))
    result.steps.append(_login("target login", lambda: open_target(plan.target, entry)))
    if plan.state_db.exists():
        store = StateStore(plan.state_db, read_only=True)  # the helpdesk may not write the state directory
        try:
            result.detail = store.mailbox_detail(entry.source)
        finally:
            store.close()
    if compare:
        result.steps.append(_compare(plan, entry, result))
    return result


def _directory(name: str, settings: DirectorySettings | None, address: str) -> Step:
    if settings is None:
        return Step(name, None, "no directory configured in the plan")
    r = roles(settings)
    holders = [*r["mail"], *r["aliases"]]
    clauses = [equals(a, address) for a in holders if a != "proxyAddresses"]
    if "proxyAddresses" in holders:  # AD spells them "SMTP:addr" (primary) and "smtp:addr"
        clauses.append(equals("proxyAddresses", f"smtp:{address}"))
        clauses.append(equals("proxyAddresses", f"SMTP:{address}"))
    if settings.preset == "ad":
        clauses.append(equals(UPN, address))
    try:
        entries = search(settings, any_of(clauses), fetched_attributes(settings))
    except (ProtocolError, MigrationError) as exc:
        return Step(name, False, f"lookup failed: {exc}")
    if not entries:
        return Step(name, False, f"{address} is not in the directory ({settings.base})")
    people = [to_person(e, settings.preset, r) for e in entries]
    state = "; ".join(
        f"{p.dn}: {p.status}" + ("" if p.mailbox_enabled or settings.preset != "ad" else ", no mailbox")
        for p in people
    )
    ok = len(people) == 1 and people[0].active and (people[0].mailbox_enabled or settings.preset != "ad")
    if len(people) > 1:
        state += " (the address is owned twice)"
    return Step(name, ok, state)


def _login(name: str, opener: Callable[[], SourceSession | TargetSession]) -> Step:
    try:
        session = opener()
    except (ProtocolError, MigrationError) as exc:
        return Step(name, False, str(exc))
    try:
        lister = getattr(session, "list_folders", None)  # sources list folders; a login is enough for targets
        folders = lister() if lister is not None else []
        return Step(name, True, f"logged in; {len(folders)} folders" if folders else "logged in")
    except ProtocolError as exc:
        return Step(name, False, f"logged in, but LIST failed: {exc}")
    finally:
        session.close()


def _compare(plan: Plan, entry: MailboxEntry, result: Triage) -> Step:
    if not plan.state_db.exists():
        return Step("missing mail?", None, "this mailbox has not been migrated yet")
    try:
        report = verify_wave(plan, entry.wave, only=[entry.source])
    except MigrationError as exc:
        return Step("missing mail?", None, str(exc))
    check = report.mailboxes[0]
    result.verify = check
    if check.error:
        return Step("missing mail?", None, f"could not compare now: {check.error}")
    t = report.totals()
    if check.ok:
        extra = f"; {t['new']} new on the source since the last pass" if t["new"] else ""
        return Step("missing mail?", True, f"every one of {t['ok']} messages is on the target{extra}")
    return Step(
        "missing mail?",
        False,
        f"{t['lost']} lost, {t['failed']} failed, {t['skipped']} skipped, {t['different']} different "
        "(listed below with their reasons)",
    )

"""Helpdesk triage of one user, right now: "I can't log in" and "my mail is missing".

For one address (the mailbox's, or any of the user's addresses and aliases in the directories):
which server the user should log in to now, is it in the source and target directories, can we log
in on both sides, where does its migration stand (cumulative counts) and per folder, does the target
hold everything the source holds at this moment, what the readiness checks found about this user,
and the last failure in the server's words. Every step keeps its own answer (or the server's words)
and never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from checks.families.directory_people import UPN, Person, fetched_attributes, roles, to_person
from checks.ldapdir import any_of, equals, search
from checks.proxy_logins import ProxyRoute, last_route, proxy_logins, route_now
from runners.connectors.base import SourceSession, TargetSession
from runners.engine.sessions import open_source, open_target
from runners.errors import MigrationError, ProtocolError
from runners.plan.model import MailboxEntry, Plan
from runners.plan.readiness_parts import DirectorySettings
from runners.state.check_rows import FindingRow
from runners.state.mailbox_views import MailboxDetail, MailboxQuery, MailboxRow
from runners.state.open_store import open_store, store_exists
from runners.state.proxy_rows import LoginRow
from runners.state.read_models.window import STAGE_WORDS, WaveWindow, stamp, wave_windows
from runners.state.statuses import MailboxState
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
    #: How the query was found when it is not the plan's own address ("an alias of …").
    found_as: str = ""
    #: Which server the user should log in to now, and since when (one sentence).
    log_in_to: str = ""
    #: The mailbox's live row with its cumulative counts (None: no run has touched it).
    row: MailboxRow | None = None
    #: The last readiness run's findings about this user (its addresses), worst first.
    findings: tuple[FindingRow, ...] = ()
    #: The last failure in the server's words (the mailbox's error, else the newest message failure).
    last_failure: str | None = None
    #: Where the user's mail is served now: "legacy" or "target", and since when (None: since before
    #: the migration), from the wave's window stage and its switched (or rolled back) step's time.
    served_by: str = "legacy"
    served_since: float | None = None
    #: The wave's stage in its cutover window (``copying`` … ``rolled-back``).
    stage: str = "copying"
    #: Whether everything of the mailbox is copied (None: no run has touched it), and in words.
    complete: bool | None = None
    completeness: str = ""
    #: Late mail caught for the user's wave after its switch (the settle step's count; None: not yet).
    late_messages: int | None = None
    #: The user's last logins through the routing proxy, newest first, and the route of the last routed one.
    proxy_logins: tuple[LoginRow, ...] = ()
    proxy_route: ProxyRoute | None = None


def find_entry(plan: Plan, address: str) -> MailboxEntry | None:
    wanted = address.strip().lower()
    return next(
        (
            m
            for m in plan.mailboxes
            if wanted in (m.source.lower(), m.target.lower(), (m.address or "").lower())
        ),
        None,
    )


def triage(plan: Plan, address: str, *, compare: bool = True) -> Triage:
    address = address.strip()
    result = Triage(address, find_entry(plan, address))
    if result.entry is None:
        result.entry, result.found_as = _by_directory(plan, address)
    entry = result.entry
    if entry is None:
        result.steps.append(
            Step(
                "plan",
                False,
                f"{address} is not a mailbox of the plan, nor an address of one in the directories",
            )
        )
        return result
    found = f" ({result.found_as})" if result.found_as else ""
    result.steps.append(Step("plan", True, f"{entry.source} → {entry.target}, wave {entry.wave}{found}"))
    result.log_in_to = log_in_to(plan, entry)
    r = plan.readiness
    result.steps.append(_directory("source directory", r.source_directory, entry.source))
    result.steps.append(_directory("target directory", r.target_directory, entry.target))
    result.steps.append(_login("source login", lambda: open_source(plan.source, entry)))
    result.steps.append(_login("target login", lambda: open_target(plan.target, entry)))
    if plan.proxy is not None:  # where the routing proxy sends the user now, with the rewritten login
        result.steps.append(Step("proxy route", *route_now(plan, entry.source)))
    if store_exists(plan):
        store = open_store(plan, read_only=True)  # the helpdesk may not write the state directory
        try:
            # Findings name a mailbox by its address when the list gives one (checks.families.identity).
            names = {
                address,
                entry.source,
                entry.target,
                *((entry.address.lower(),) if entry.address else ()),
            }
            _read_state(store, entry, names, result)
            _read_window(plan, store, entry, result)
            result.proxy_logins = proxy_logins(store, names)
            result.proxy_route = last_route(result.proxy_logins)
        finally:
            store.close()
    result.complete, result.completeness = completeness(result.row)
    if compare:
        result.steps.append(_compare(plan, entry, result))
    return result


def log_in_to(plan: Plan, entry: MailboxEntry, window: WaveWindow | None = None) -> str:
    """Where the user logs in now, and since when: the target once the wave is switched (its
    switched step's time), the legacy before that or after a rollback."""
    if window is not None and window.on_target:
        since = f" since {stamp(window.on_target_since)}" if window.on_target_since else ""
        return (
            f"served by the target ({plan.target.address}){since}: wave {entry.wave} is "
            f"{STAGE_WORDS.get(window.stage, window.stage)}"
        )
    if window is not None and window.rolled_back_at is not None:
        return (
            f"legacy ({plan.source.address}), again since {stamp(window.rolled_back_at)}: wave {entry.wave} "
            f"was rolled back from the target ({plan.target.address})"
        )
    stage = STAGE_WORDS.get(window.stage, window.stage) if window is not None else "copying"
    return (
        f"legacy ({plan.source.address}), since before the migration: wave {entry.wave} is {stage}, "
        f"not switched to the target ({plan.target.address}) yet"
    )


def completeness(row: MailboxRow | None) -> tuple[bool | None, str]:
    """Whether the mailbox is copied whole (cumulative counts), and in words."""
    if row is None:
        return None, "not started: no run has touched this mailbox yet"
    done, total = row.done_of_total
    left = max(total - done - row.failed - row.skipped, 0)
    complete = row.state == MailboxState.OK and not row.failed and not row.skipped and done >= total
    if complete:
        return True, f"complete: all {total:,} messages copied"
    return False, (
        f"NOT complete: {max(total - done, 0):,} of {total:,} messages not copied ({left:,} pending, "
        f"{row.failed:,} failed, {row.skipped:,} skipped; the mailbox is {row.state})"
    )


def _read_window(plan: Plan, store: StateStore, entry: MailboxEntry, result: Triage) -> None:
    window = wave_windows(store, [entry.wave]).get(entry.wave)
    if window is None:
        return
    result.stage = window.stage
    result.late_messages = window.late_messages
    if window.on_target:
        result.served_by, result.served_since = "target", window.on_target_since
    else:
        result.served_since = window.rolled_back_at
    result.log_in_to = log_in_to(plan, entry, window)


def _read_state(store: StateStore, entry: MailboxEntry, addresses: set[str], result: Triage) -> None:
    result.detail = store.mailbox_detail(entry.source)
    rows = store.mailbox_rows(MailboxQuery(source=entry.source))
    if rows:
        result.row = rows[0].with_ledger(store.ledger_progress([entry.source]).get(entry.source))
    wanted = {a.lower() for a in addresses}
    findings = store.latest_findings()  # every check's latest findings, across runs
    result.findings = tuple(f for f in findings if f.object_id.lower() in wanted and f.severity != "pass")
    failures = [
        (attempt.at, attempt.reason, f"{n.folder} UID {n.uid}")
        for n in store.not_copied(None, [entry.source])
        for attempt in n.history
        if attempt.reason
    ]
    if result.row is not None and result.row.error:
        result.last_failure = result.row.error
    elif failures:
        _, reason, where = max(failures)
        result.last_failure = f"{where}: {reason}"
    elif result.detail is not None and any(f.error for f in result.detail.folders):
        folder = next(f for f in result.detail.folders if f.error)
        result.last_failure = f"folder {folder.source}: {folder.error}"


def _by_directory(plan: Plan, address: str) -> tuple[MailboxEntry | None, str]:
    """The plan's mailbox of a person who owns ``address`` in either directory (an alias, a second
    address, an AD UPN), and how it was found; (None, "") when nobody does or nothing answers."""
    r = plan.readiness
    for side, settings in (("source", r.source_directory), ("target", r.target_directory)):
        if settings is None:
            continue
        try:
            people = _people(settings, address)
        except (ProtocolError, MigrationError):
            continue  # the directory step says why, for the mailbox's own address
        for person in people:
            for owned in (person.primary, *person.aliases, person.upn):
                entry = find_entry(plan, owned) if owned else None
                if entry is not None:
                    return entry, f"{address} is an address of {person.dn} in the {side} directory"
    return None, ""


def _people(settings: DirectorySettings, address: str) -> list[Person]:
    """Everyone in the directory owning ``address`` (mail, alias attributes, AD proxyAddresses and UPN)."""
    r = roles(settings)
    holders = [*r["mail"], *r["aliases"]]
    clauses = [equals(a, address) for a in holders if a != "proxyAddresses"]
    if "proxyAddresses" in holders:  # AD spells them "SMTP:addr" (primary) and "smtp:addr"
        clauses.append(equals("proxyAddresses", f"smtp:{address}"))
        clauses.append(equals("proxyAddresses", f"SMTP:{address}"))
    if settings.preset == "ad":
        clauses.append(equals(UPN, address))
    return [
        to_person(e, settings.preset, r)
        for e in search(settings, any_of(clauses), fetched_attributes(settings))
    ]


def _directory(name: str, settings: DirectorySettings | None, address: str) -> Step:
    if settings is None:
        return Step(name, None, "no directory configured in the plan")
    try:
        people = _people(settings, address)
    except (ProtocolError, MigrationError) as exc:
        return Step(name, False, f"lookup failed: {exc}")
    if not people:
        return Step(name, False, f"{address} is not in the directory ({settings.base})")
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
    if not store_exists(plan):
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

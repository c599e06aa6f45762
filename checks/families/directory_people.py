"""Both directories exported once per run and normalised into ``Person`` records.

A preset says which attributes play which role in a schema (section 8 of the readiness
reference); ``attributes = { role = "name" }`` in the plan replaces one role's attributes. Every
address is compared lower-cased with an IDNA (ASCII) domain.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from checks.context import CheckContext
from checks.ldapdir import Entry, all_of, any_of, present, search, server_name
from checks.registry import SkipCheck
from runners.plan.readiness_parts import DirectoryPreset, DirectorySettings

Side = Literal["source", "target"]
Roles = Mapping[str, tuple[str, ...]]

#: Role → attributes, per preset. ``mail`` holds the primary address, ``aliases`` further ones.
PRESETS: dict[DirectoryPreset, Roles] = {
    "inetlocalmailrecipient": {
        "mail": ("mail",), "aliases": ("mailLocalAddress",), "forward": ("mailRoutingAddress",),
        "status": (), "mailbox": (), "uid": ("uid",),
    },
    "iplanet": {
        "mail": ("mail",), "aliases": ("mailAlternateAddress", "mailEquivalentAddress"),
        "forward": ("mailForwardingAddress",), "status": ("inetUserStatus", "mailUserStatus"),
        "mailbox": ("mailDeliveryOption",), "uid": ("uid",),
    },
    "qmail": {
        "mail": ("mail",), "aliases": ("mailAlternateAddress",), "forward": ("mailForwardingAddress",),
        "status": ("accountStatus",), "mailbox": ("deliveryMode",), "uid": ("uid",),
    },
    "ad": {
        "mail": ("mail",), "aliases": ("proxyAddresses",), "forward": ("targetAddress",),
        "status": ("userAccountControl",), "mailbox": ("msExchMailboxGuid", "homeMDB"),
        "uid": ("sAMAccountName",),
    },
}  # fmt: skip
UPN = "userPrincipalName"
#: Target types whose mailboxes Exchange's directory attributes describe (the ``ad`` preset's markers).
EXCHANGE_TARGETS = ("ews", "graph")

#: Status words that mean "this account is not in use" (iPlanet, qmail-ldap and common ones).
DISABLED_WORDS = frozenset({"inactive", "disabled", "deleted", "removed", "noaccess", "locked", "hold"})
#: Delivery options: local delivery turned off (qmail-ldap), on (iPlanet, qmail-ldap), or only
#: something other than a mailbox (iPlanet ``forward``, ``program``, ``autoreply``).
NO_MAILBOX_WORDS = frozenset({"nolocal", "forwardonly", "nombox"})
MAILBOX_WORDS = frozenset({"mailbox", "native", "unix", "normal", "localdelivery"})
ELSEWHERE_WORDS = frozenset({"forward", "program", "autoreply", "reply", "echo"})
_UAC_ACCOUNTDISABLE = 0x2
_PROXY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):(.*)$", re.DOTALL)
#: Attributes whose values never go into evidence, whatever a role override says.
_SECRET_NAMES = re.compile(r"pass|pwd", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Person:
    """One directory object that owns mail addresses (a user, a group, a contact)."""

    key: str  # uid / sAMAccountName, else the DN
    dn: str
    primary: str | None
    aliases: tuple[str, ...]
    forwards: tuple[str, ...]
    status: Literal["active", "disabled"]
    mailbox_enabled: bool
    #: Wildcard values (``@domain``, ``*@domain``) among its addresses, kept out of ``aliases``.
    catch_alls: tuple[str, ...] = ()
    upn: str | None = None
    #: What the server returned, for evidence and format checks.
    entry: Entry = field(default_factory=lambda: Entry("", {}))

    @property
    def addresses(self) -> tuple[str, ...]:
        return ((self.primary,) if self.primary else ()) + self.aliases

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def forward_only(self) -> bool:
        return bool(self.forwards) and not self.mailbox_enabled

    @property
    def label(self) -> str:
        """How findings name it: its primary address, else its key."""
        return self.primary or self.key

    @property
    def domain(self) -> str:
        return domain_of(self.primary) if self.primary else ""


@dataclass(frozen=True, slots=True)
class Directory:
    side: Side
    settings: DirectorySettings
    search_filter: str
    people: tuple[Person, ...]
    #: Lower-cased address → the people owning it (more than one is a duplicate).
    owners: dict[str, tuple[Person, ...]]
    #: Set when every object counts as mailbox-enabled because it exists: why (the preset's markers
    #: are Exchange's and the target is not Exchange).
    by_existence: str = ""

    @property
    def where(self) -> str:
        return f"{server_name(self.settings)} base {self.settings.base}"


def directory(ctx: CheckContext, side: Side) -> Directory:
    """The ``[directory.<side>]`` export, done once per run; SkipCheck when the plan has none."""
    r = ctx.plan.readiness
    settings = r.source_directory if side == "source" else r.target_directory
    if settings is None:
        raise SkipCheck(f"no [directory.{side}] section in the plan")
    return ctx.fact(f"directory:{side}", lambda: _export(ctx, side, settings))


def optional_directory(ctx: CheckContext, side: Side) -> Directory | None:
    try:
        return directory(ctx, side)
    except SkipCheck:
        return None


def roles(settings: DirectorySettings) -> dict[str, tuple[str, ...]]:
    out = dict(PRESETS[settings.preset])
    out.update({role: (name,) for role, name in settings.attributes.items() if role in out})
    return out


def fetched_attributes(settings: DirectorySettings) -> list[str]:
    """What ``to_person`` reads: every role's attributes, and in AD the UPN."""
    upn = [UPN] if settings.preset == "ad" else []
    return [a for attrs in roles(settings).values() for a in attrs] + upn


def export_filter(settings: DirectorySettings) -> str:
    """Objects holding any address (or, in AD, a UPN), ANDed with the plan's own filter."""
    r = roles(settings)
    holders = [*r["mail"], *r["aliases"], *((UPN,) if settings.preset == "ad" else ())]
    return all_of([any_of(present(a) for a in holders), settings.filter or ""])


def markers_apply(settings: DirectorySettings, side: Side, target_type: str) -> bool:
    """Do the preset's mailbox markers mean "has a mailbox" on this side?

    The ``ad`` preset's (msExchMailboxGuid, homeMDB) are Exchange's: on the target they count only
    for an Exchange target, unless the plan names the marker itself (``attributes = { mailbox = ...}``).
    A source read over IMAP may still be Exchange, so the source side keeps them. The other presets'
    markers (delivery options) describe the directory's own mail users and fit any target.
    """
    return (
        side == "source"
        or settings.preset != "ad"
        or "mailbox" in settings.attributes
        or (target_type in EXCHANGE_TARGETS)
    )


def _export(ctx: CheckContext, side: Side, settings: DirectorySettings) -> Directory:
    r = roles(settings)
    search_filter = export_filter(settings)
    with ctx.server(server_name(settings)):  # ldap://host:port
        entries = search(settings, search_filter, fetched_attributes(settings))
    people = tuple(to_person(e, settings.preset, r) for e in entries)
    by_existence = ""
    if not markers_apply(settings, side, ctx.plan.target.type):
        people = tuple(dataclasses.replace(p, mailbox_enabled=True) for p in people)
        by_existence = (
            f"the target is {ctx.plan.target.type}, not Exchange: {'/'.join(r['mailbox'])} don't apply, "
            "so an object holding the address is enough"
        )
    owners: dict[str, list[Person]] = {}
    for person in people:
        for address in person.addresses:
            owners.setdefault(address, []).append(person)
    return Directory(
        side, settings, search_filter, people, {a: tuple(p) for a, p in owners.items()}, by_existence
    )


# --- normalising one entry -------------------------------------------------------------------


def to_person(entry: Entry, preset: DirectoryPreset, r: Roles) -> Person:
    def values(role: str) -> list[str]:
        return [v.strip() for a in r[role] for v in entry.values(a) if v.strip()]

    primary: str | None = None
    others: list[str] = []
    catch_alls: list[str] = []
    for value in values("mail") + values("aliases"):
        kind, address = split_proxy(value)
        if kind is None:
            continue  # X500:, SIP:, ...: not a mail address
        if is_catch_all(address):
            catch_alls.append(normalize(address))
            continue
        if kind == "SMTP" and primary is None:  # AD's primary proxy wins over mail
            primary = normalize(address)
        others.append(normalize(address))
    if primary is None and others:
        primary = others[0]
    aliases = tuple(dict.fromkeys(a for a in others if a != primary))
    own = {primary, *aliases}
    forwards = tuple(
        dict.fromkeys(
            normalize(a)
            for k, a in map(split_proxy, values("forward"))
            if k is not None and normalize(a) not in own
        )
    )
    uid = values("uid")
    upn = entry.values(UPN)
    return Person(
        key=uid[0] if uid else entry.dn,
        dn=entry.dn,
        primary=primary,
        aliases=aliases,
        forwards=forwards,
        status=status_of(values("status")),
        mailbox_enabled=mailbox_of(values("mailbox"), preset),
        catch_alls=tuple(dict.fromkeys(catch_alls)),
        upn=upn[0] if upn else None,
        entry=entry,
    )


def split_proxy(value: str) -> tuple[str | None, str]:
    """``SMTP:a@b`` → ("SMTP", "a@b"); ``smtp:`` → ("smtp", ...); ``X500:...`` → (None, ...);
    a bare address → ("", address)."""
    match = _PROXY.match(value)
    if match is None or "@" in match.group(1):
        return "", value
    kind, rest = match.groups()
    return (kind if kind.lower() == "smtp" else None), rest


def normalize(address: str) -> str:
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:  # not a valid IDN: compare it as written
        pass
    return f"{local}@{domain}".lower()


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def is_catch_all(address: str) -> bool:
    """``@domain`` (iPlanet, Postfix, sendmail) or a ``*`` in the local part (``*@domain``)."""
    local, at, _domain = address.strip().rpartition("@")
    return bool(at) and (local == "" or "*" in local)


def status_of(values: list[str]) -> Literal["active", "disabled"]:
    for value in values:
        if value.isdigit():  # userAccountControl: bit 2 is ACCOUNTDISABLE
            if int(value) & _UAC_ACCOUNTDISABLE:
                return "disabled"
        elif value.lower() in DISABLED_WORDS:
            return "disabled"
    return "active"


def mailbox_of(values: list[str], preset: DirectoryPreset) -> bool:
    """AD: a mailbox GUID or database is there. Elsewhere: local delivery unless turned off."""
    if preset == "ad":
        return bool(values)
    words = {v.lower() for v in values}
    if words & NO_MAILBOX_WORDS:
        return False
    if words & MAILBOX_WORDS:
        return True
    return not (words and words <= ELSEWHERE_WORDS)


def evidence(*people: Person) -> str:
    """The entries as the server returned them: DN and the relevant attributes, never a password."""
    blocks = []
    for person in people:
        lines = [f"dn: {person.dn}"]
        for name, values in person.entry.attributes.items():
            if not _SECRET_NAMES.search(name):
                lines += [f"{name}: {v}" for v in values]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

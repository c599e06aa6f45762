"""Which mail address a plan mailbox is, when its source login isn't one (``jsmith``).

Directory findings are about addresses, source findings about logins: findings name a mailbox by
its address whenever one is known, so the two join, and say which login that is. The address
comes from the mailbox list's ``address`` column, else the login itself when it is an address,
else the source directory's account whose login attribute (the preset's ``uid`` role,
``attributes = { uid = "..." }`` to change it) holds the login. The engine keeps logging in with
the login.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.context import CheckContext
from checks.families.directory_people import Directory, Person, normalize, optional_directory, roles
from runners.errors import ProtocolError
from runners.plan.model import MailboxEntry

FROM_LIST = "the mailbox list's address column"
FROM_LOGIN = "the login, which is an address"


@dataclass(frozen=True, slots=True)
class Identity:
    login: str
    #: Lower-cased, IDNA domain; None when no source of addresses knows this login.
    address: str | None
    #: Where the address comes from (``FROM_LIST``, ``FROM_LOGIN``, the directory attribute), or why none.
    origin: str
    #: Source directory accounts whose login attribute holds the login (more than one is ambiguous).
    accounts: tuple[Person, ...] = ()

    @property
    def object_id(self) -> str:
        """How findings name the mailbox: its address when known, else its login."""
        return self.address or self.login

    def describe(self) -> str:
        """One line for a finding's evidence: which identity the finding is about."""
        if self.address is None:
            return f"mailbox: login {self.login}, address unknown ({self.origin})"
        if normalize(self.login) == self.address:
            return f"mailbox: address {self.address} (also its login)"
        return f"mailbox: address {self.address} ({self.origin}), login {self.login}"


def with_identity(ident: Identity, evidence: str = "") -> str:
    """A finding's evidence, headed by which identity it is about (unless the login is the address:
    then the finding's object says it all)."""
    if ident.address is not None and normalize(ident.login) == ident.address:
        return evidence
    return ident.describe() + (f"\n\n{evidence}" if evidence else "")


def identities(ctx: CheckContext) -> dict[str, Identity]:
    """Every plan mailbox's identity by its source login, resolved once per run."""
    return ctx.fact("identities", lambda: _resolve_all(ctx))


def identity(ctx: CheckContext, entry: MailboxEntry) -> Identity:
    return identities(ctx)[entry.source]


def _resolve_all(ctx: CheckContext) -> dict[str, Identity]:
    entries = ctx.plan.mailboxes
    source: Directory | None = None
    missing = "no address column in the mailbox list and no [directory.source] to look it up"
    try:
        source = optional_directory(ctx, "source")
    except ProtocolError as exc:  # the directory checks report it; source findings still need names
        missing = f"the source directory could not be read: {exc}"
    logins = _by_login(source) if source is not None else {}
    return {e.source: resolve(e, source, logins, missing) for e in entries}


def login_attributes(directory: Directory) -> tuple[str, ...]:
    return roles(directory.settings)["uid"]


def _by_login(directory: Directory) -> dict[str, list[Person]]:
    out: dict[str, list[Person]] = {}
    for person in directory.people:
        for name in login_attributes(directory):
            for value in person.entry.values(name):
                out.setdefault(value.strip().lower(), []).append(person)
    return out


def resolve(
    entry: MailboxEntry, source: Directory | None, logins: dict[str, list[Person]], missing: str = ""
) -> Identity:
    accounts = tuple({p.dn: p for p in logins.get(entry.source.lower(), ())}.values())
    if entry.address is not None:
        return Identity(entry.source, normalize(entry.address), FROM_LIST, accounts)
    if "@" in entry.source:
        return Identity(entry.source, normalize(entry.source), FROM_LOGIN, accounts)
    if source is None:
        return Identity(entry.source, None, missing)
    where = f"{'/'.join(login_attributes(source))} in {source.where}"
    with_address = [p for p in accounts if p.primary]
    if len(with_address) == 1:
        return Identity(entry.source, with_address[0].primary, f"from {where}", accounts)
    if not with_address:
        return Identity(entry.source, None, f"no account with an address has this login as {where}", accounts)
    return Identity(entry.source, None, f"{len(with_address)} accounts have this login as {where}", accounts)

"""DIR-LOGIN-007: every plan mailbox's source login is tied to its mail address.

Without the tie, source findings (about ``jsmith``) and directory findings (about
``john.smith@example.com``) can't be joined: the same person shows up as two strangers. The tie is
the mailbox list's ``address`` column, a login that is itself an address, or the source directory
account whose login attribute holds the login (``checks.families.identity``).
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.directory_people import evidence, optional_directory
from checks.families.identity import FROM_LIST, FROM_LOGIN, identity, with_identity
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check

CHECK_ID = "DIR-LOGIN-007"


@check(CHECK_ID, "Every plan mailbox's login is tied to its address", category="directory")
def logins_have_addresses(ctx: CheckContext) -> Iterator[Finding]:
    if optional_directory(ctx, "source") is None and all(
        e.address is not None or "@" in e.source for e in ctx.plan.mailboxes
    ):
        raise SkipCheck("every login is an address or has one in the mailbox list, and no [directory.source]")
    for entry in ctx.plan.mailboxes:
        ident = identity(ctx, entry)
        if ident.address is None:
            yield Finding(
                CHECK_ID, Severity.WARNING, "mailbox", ident.object_id, "Login without a known address",
                observed=ident.origin, expected="the mailbox's address, to join its source and directory findings",
                evidence=with_identity(ident, evidence(*ident.accounts)),
                remediation="Add an address column to the mailbox list, or set the source directory's login "
                "attribute ([directory.source] attributes = { uid = \"...\" }) to the one holding the logins.",
            )  # fmt: skip
            continue
        held = {a for p in ident.accounts for a in p.addresses}
        if ident.origin in (FROM_LIST, FROM_LOGIN) and held and ident.address not in held:
            yield Finding(
                CHECK_ID, Severity.WARNING, "mailbox", ident.object_id, "Address and directory account disagree",
                observed=f"{ident.origin} says {ident.address}; the source directory account with login "
                f"{ident.login} holds {', '.join(sorted(held))}",
                expected=f"the account with login {ident.login} holds {ident.address}",
                evidence=with_identity(ident, evidence(*ident.accounts)),
                remediation="Correct the mailbox list's address (or the login) so both name the same person.",
            )  # fmt: skip
            continue
        yield Finding(
            CHECK_ID, Severity.PASS, "mailbox", ident.object_id, "Login tied to its address",
            observed=f"login {ident.login} is {ident.address} ({ident.origin})", evidence=with_identity(ident),
        )  # fmt: skip

"""Source health: can we log in everywhere, open every folder, and what does each mailbox hold."""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.identity import identity, with_identity
from checks.model import Finding, Severity
from checks.registry import check
from checks.survey import survey
from runners.connectors.imap_login import login_name
from runners.errors import MigrationError, ProtocolError

MB = 1_000_000


@check("SRC-AUTH-001", "Bulk access to the source works on a canary mailbox", category="source")
def canary_login(ctx: CheckContext) -> Iterator[Finding]:
    """The first mailbox's login in the source pass (no login of its own: one per mailbox per run)."""
    plan = ctx.plan
    canary = survey(ctx).mailboxes[0]
    ident = identity(ctx, canary.entry)
    how = (
        f"master user {plan.source.master_user} as {login_name(plan.source, canary.entry.source)}"
        if plan.source.auth == "master"
        else "the user's own password"
    )
    if canary.error_kind == "AuthError":
        yield Finding(
            "SRC-AUTH-001",
            Severity.BLOCKER,
            "server",
            plan.source.address,
            "Bulk login refused",
            observed=f"login with {how} for {canary.entry.source} was refused",
            expected="login succeeds",
            evidence=with_identity(ident, canary.error_text),
            remediation=_auth_help(plan.source.auth),
        )
        return
    if canary.error_kind == "config":
        raise MigrationError(canary.error or "")
    if canary.error is not None:
        raise ProtocolError(plan.source.address, "login", canary.error_text or canary.error)
    yield Finding(
        "SRC-AUTH-001",
        Severity.PASS,
        "server",
        plan.source.address,
        "Bulk login works",
        observed=f"logged in with {how} for {canary.entry.source}; {len(canary.folders)} folders opened",
        evidence=with_identity(ident),
    )


def _auth_help(auth: str) -> str:
    if auth == "master":
        return (
            "Check the master user and its password; on Dovecot a passdb with master = yes and "
            "auth_master_user_separator, or set login_template to the server's master-login form."
        )
    return "Check the per-user passwords in the mailbox CSV or the endpoint's password reference."


@check("SRC-LOGIN-002", "Every mailbox logs in and every folder opens", category="source")
def every_mailbox_opens(ctx: CheckContext) -> Iterator[Finding]:
    for box in survey(ctx).mailboxes:
        ident = identity(ctx, box.entry)
        mailbox = ident.object_id
        if box.error is not None:
            auth = box.error_kind == "AuthError"
            yield Finding(
                "SRC-LOGIN-002",
                Severity.BLOCKER,
                "mailbox",
                mailbox,
                "Mailbox can't log in" if auth else "Mailbox can't be reached",
                observed=box.error,
                expected="login and LIST succeed",
                evidence=with_identity(ident),
                remediation="Fix or re-enable the account, or remove it from the wave with a recorded reason "
                "(invalid mailbox: in the directory but not usable).",
            )
            continue
        broken = [f for f in box.folders if f.error is not None]
        for folder in broken:
            yield Finding(
                "SRC-LOGIN-002",
                Severity.BLOCKER,
                "folder",
                f"{mailbox}/{folder.folder.display}",
                "Folder can't be opened",
                observed="EXAMINE refused",
                expected="the folder opens",
                evidence=with_identity(ident, folder.error or ""),
                key=folder.folder.raw_name,
                remediation="Repair the folder on the source (Dovecot: doveadm force-resync) or exclude it "
                "in [folders] exclude with a waiver; otherwise its messages can't be copied.",
            )
        if not broken:
            yield Finding(
                "SRC-LOGIN-002",
                Severity.PASS,
                "mailbox",
                mailbox,
                "Mailbox and all folders open",
                observed=f"{len(box.folders)} folders, {box.messages} messages, {box.bytes / MB:.1f} MB",
                evidence=with_identity(ident),
            )


@check("SRC-SURVEY-003", "Source survey: messages and bytes per mailbox", category="source")
def survey_summary(ctx: CheckContext) -> Iterator[Finding]:
    result = survey(ctx)
    for box in result.mailboxes:
        if box.error is not None:
            continue
        biggest = max(box.folders, key=lambda f: f.bytes, default=None)
        ident = identity(ctx, box.entry)
        yield Finding(
            "SRC-SURVEY-003",
            Severity.INFO,
            "mailbox",
            ident.object_id,
            "Mailbox volume",
            observed=f"{box.messages} messages, {box.bytes / MB:.1f} MB in {len(box.folders)} folders; "
            f"largest message {box.largest / MB:.2f} MB"
            + (f"; biggest folder {biggest.folder.display} ({biggest.bytes / MB:.1f} MB)" if biggest else ""),
            evidence=with_identity(ident),
        )
    yield Finding(
        "SRC-SURVEY-003",
        Severity.INFO,
        "wave",
        "all",
        "Planned volume",
        observed=f"{len(result.mailboxes)} mailboxes, {result.messages} messages, {result.bytes / MB:.1f} MB",
    )

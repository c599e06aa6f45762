"""Messages that will break on the way: unreadable, empty, long lines, no Message-ID, broken MIME,
and INBOXes that collect mail for many addresses (catch-alls)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from checks.context import CheckContext
from checks.families.identity import identities, with_identity
from checks.model import Finding, Severity
from checks.registry import check
from checks.scan import MAX_LINE, MailboxScan, MessageProblem, scan

#: Distinct envelope recipients in one INBOX (besides the mailbox itself) that suggest a catch-all.
CATCH_ALL_RECIPIENTS = 5
#: Problem messages listed in one finding's evidence; the rest are counted.
SHOWN = 20


def _findings(
    ctx: CheckContext,
    check_id: str,
    pick: Callable[[MailboxScan], list[MessageProblem]],
    severity: Severity,
    title: str,
    remediation: str,
) -> Iterator[Finding]:
    names = identities(ctx)
    for box in scan(ctx):
        if box.error is not None:
            continue  # SRC-LOGIN-002 reports the mailbox itself
        ident = names[box.mailbox]
        problems = pick(box)
        if not problems:
            yield Finding(
                check_id,
                Severity.PASS,
                "mailbox",
                ident.object_id,
                title,
                observed=f"none among {box.scanned} messages",
                evidence=with_identity(ident),
            )
            continue
        listed = "\n".join(f"{p.folder} UID {p.uid} ({p.size} bytes): {p.detail}" for p in problems[:SHOWN])
        more = f"\n... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        yield Finding(
            check_id,
            severity,
            "mailbox",
            ident.object_id,
            title,
            observed=f"{len(problems)} of {box.scanned} messages",
            evidence=with_identity(ident, listed + more),
            remediation=remediation,
        )


@check("SRC-READ-004", "Every message can be read from the source", category="source")
def unreadable_messages(ctx: CheckContext) -> Iterator[Finding]:
    yield from _findings(
        ctx,
        "SRC-READ-004",
        lambda b: b.unreadable + b.empty,
        Severity.WARNING,
        "Corrupt or unreadable messages",
        "Repair the mailbox on the source (Dovecot: doveadm force-resync -u USER FOLDER) before the wave; "
        "what can't be read is recorded by the engine as failed, with the server's words.",
    )


@check("SRC-LINE-005", f"No line longer than {MAX_LINE} characters", category="source")
def long_lines(ctx: CheckContext) -> Iterator[Finding]:
    severity = Severity.BLOCKER if ctx.plan.target.type in ("ews", "graph") else Severity.WARNING
    yield from _findings(
        ctx,
        "SRC-LINE-005",
        lambda b: b.long_lines,
        severity,
        "Messages with very long lines",
        "Exchange refuses lines over 10,239 characters over IMAP; such messages fail unless rewrapped. "
        "List them for the users concerned or accept them as skipped with a waiver.",
    )


@check("SRC-MSGID-006", "Messages without a Message-ID", category="source")
def no_message_id(ctx: CheckContext) -> Iterator[Finding]:
    yield from _findings(
        ctx,
        "SRC-MSGID-006",
        lambda b: b.no_message_id,
        Severity.INFO,
        "Messages without Message-ID",
        "Nothing to do for cutover: the engine identifies messages by content, not by Message-ID. Other "
        "tools (imapsync) skip or alter them.",
    )


@check("SRC-MIME-007", "Messages the MIME parser finds defects in", category="source")
def mime_defects(ctx: CheckContext) -> Iterator[Finding]:
    yield from _findings(
        ctx,
        "SRC-MIME-007",
        lambda b: b.mime_defects,
        Severity.INFO,
        "Malformed MIME",
        "Copied byte for byte by IMAP targets; Exchange re-renders MIME, so spot-check these after the pilot.",
    )


@check("SRC-CATCH-008", "Catch-all mailboxes (mail for many addresses in one INBOX)", category="source")
def catch_all_inbox(ctx: CheckContext) -> Iterator[Finding]:
    owners = {m.source.lower(): m for m in ctx.plan.mailboxes}
    names = identities(ctx)
    for box in scan(ctx):
        if box.error is not None:
            continue
        ident = names[box.mailbox]
        own = {box.mailbox.lower(), owners[box.mailbox.lower()].target.lower(), ident.object_id.lower()}
        others = {r: n for r, n in box.inbox_recipients.items() if r not in own}
        if len(others) > CATCH_ALL_RECIPIENTS:
            top = sorted(others.items(), key=lambda kv: -kv[1])[:SHOWN]
            yield Finding(
                "SRC-CATCH-008",
                Severity.BLOCKER,
                "mailbox",
                ident.object_id,
                "INBOX looks like a catch-all",
                observed=f"{len(others)} distinct envelope recipients (Delivered-To / X-Original-To) in INBOX",
                expected=f"at most {CATCH_ALL_RECIPIENTS} besides the mailbox's own address",
                evidence=with_identity(ident, "\n".join(f"{addr}: {count} messages" for addr, count in top)),
                remediation="Design the catch-all on the target before the cutover (Exchange Online rejects "
                "unknown recipients: an internal-relay domain plus a transport rule, or drop it), then record "
                "the decision as a waiver.",
            )
        else:
            yield Finding(
                "SRC-CATCH-008",
                Severity.PASS,
                "mailbox",
                ident.object_id,
                "Not a catch-all",
                observed=f"{len(others)} other envelope recipients in INBOX",
                evidence=with_identity(ident),
            )

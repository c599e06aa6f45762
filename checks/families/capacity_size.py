"""TGT-SIZE-006: no source message is larger than the target accepts.

The target's limit is the smaller of the plan's ``[target] max_message_bytes`` and the APPENDLIMIT
an IMAP target advertises (RFC 7889: ``APPENDLIMIT=n`` in CAPABILITY after login, or a bare
``APPENDLIMIT`` with the limit per folder, asked for INBOX with STATUS). One finding per mailbox:
a blocker listing every oversized message (folder, UID, size), else a pass with its largest one.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.canary_target import Limit, canary_target
from checks.families.identity import Identity, identity, with_identity
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.survey import MailboxSurvey, survey
from checks.volume import exact_bytes, survey_gap
from runners.plan.model import Plan

CHECK_ID = "TGT-SIZE-006"
#: Oversized messages listed per mailbox in the evidence; the count is always complete.
LISTED = 50


@check(CHECK_ID, "No source message exceeds the target's message size limit", category="capacity",
       phase="pre")  # fmt: skip
def message_size(ctx: CheckContext) -> Iterator[Finding]:
    limits = target_limits(ctx)
    if not limits:
        raise SkipCheck(
            "the plan sets no [target] max_message_bytes and the target advertises no APPENDLIMIT: "
            "nothing to compare the messages with"
        )
    limit = min(limits, key=lambda item: item.size)
    limits_text = "\n".join(f"limit {exact_bytes(x.size)}: {x.source}" for x in limits)
    for box in survey(ctx).mailboxes:
        yield _mailbox_finding(ctx.plan, box, identity(ctx, box.entry), limit, limits_text)


def target_limits(ctx: CheckContext) -> list[Limit]:
    plan = ctx.plan
    limits = []
    if plan.target.max_message_bytes:
        limits.append(Limit(plan.target.max_message_bytes, "the plan's [target] max_message_bytes"))
    if plan.target.type == "imap" and plan.mailboxes:
        advertised = _appendlimit(ctx)
        if advertised is not None:
            limits.append(advertised)
    return limits


def _appendlimit(ctx: CheckContext) -> Limit | None:
    """As the first mailbox's target user (capabilities after login are the real ones)."""
    canary = canary_target(ctx)
    if canary.error is not None:
        raise canary.error
    return canary.appendlimit


def _mailbox_finding(
    plan: Plan, box: MailboxSurvey, ident: Identity, limit: Limit, limits_text: str
) -> Finding:
    mailbox = ident.object_id
    expected = f"every message at most {exact_bytes(limit.size)}"
    oversized = sorted(
        (
            (f.folder.display, m.uid, m.key, m.size)
            for f in box.folders
            for m in f.metas
            if m.size > limit.size
        ),
        key=lambda item: -item[3],
    )
    gap = survey_gap(box)
    if oversized:
        imap = plan.source.type == "imap"
        lines = [
            f"{folder} UID {uid}: {size} bytes" if imap else f"{folder} message {key}: {size} bytes"
            for folder, uid, key, size in oversized[:LISTED]
        ]
        if len(oversized) > LISTED:
            lines.append(f"... and {len(oversized) - LISTED} more")
        return Finding(
            CHECK_ID, Severity.BLOCKER, "mailbox", mailbox,
            f"{mailbox}: {len(oversized)} message(s) larger than the target accepts",
            observed=f"{len(oversized)} message(s) over {exact_bytes(limit.size)}, the largest "
            f"{exact_bytes(oversized[0][3])} in {oversized[0][0]}" + (f" ({gap})" if gap else ""),
            expected=expected, evidence=with_identity(ident, "\n".join([*lines, limits_text])),
            remediation="Raise the target's limit for the migration, or have the users save the "
            "attachments elsewhere; the engine skips these messages with their reason otherwise.",
        )  # fmt: skip
    if gap is not None:
        return Finding(
            CHECK_ID, Severity.INFO, "mailbox", mailbox, f"{mailbox}: message sizes not fully known",
            observed=gap, expected=expected, evidence=with_identity(ident, limits_text),
        )  # fmt: skip
    return Finding(
        CHECK_ID, Severity.PASS, "mailbox", mailbox, f"{mailbox}: every message fits the target's limit",
        observed=f"largest message {exact_bytes(box.largest)}", expected=expected,
        evidence=with_identity(ident, limits_text),
    )  # fmt: skip

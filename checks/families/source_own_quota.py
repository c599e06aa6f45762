"""SRC-QUOTA-011: source mailboxes at their own quota may be refusing mail right now.

Users blame the migration for bounces that started before it: the source's GETQUOTAROOT answer
(read in the source pass, on the survey's session) says which mailboxes are full or nearly so.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.identity import identity, with_identity
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.survey import survey

CHECK_ID = "SRC-QUOTA-011"
#: Share of a quota from which a mailbox is "nearly full": one ordinary day of mail may fill it.
NEARLY_FULL = 0.95


@check(CHECK_ID, "Source mailboxes are below their own quota", category="source")
def source_quota(ctx: CheckContext) -> Iterator[Finding]:
    boxes = [b for b in survey(ctx).mailboxes if b.error is None]
    if boxes and all(b.quota is None and b.quota_error is None for b in boxes):
        raise SkipCheck("the source offers no quota to ask (no QUOTA capability)")
    for box in boxes:
        ident = identity(ctx, box.entry)
        if box.quota_error is not None:
            yield Finding(
                CHECK_ID, Severity.INFO, "mailbox", ident.object_id, "Source quota could not be read",
                observed="GETQUOTAROOT INBOX refused", evidence=with_identity(ident, box.quota_error),
            )  # fmt: skip
            continue
        resources = box.quota or []
        worst = max(resources, key=lambda r: r.share, default=None)
        listed = "\n".join(r.describe() for r in resources)
        if worst is None:
            yield Finding(
                CHECK_ID, Severity.PASS, "mailbox", ident.object_id, "No quota on the source mailbox",
                observed="GETQUOTAROOT INBOX names no limited resource", evidence=with_identity(ident),
            )  # fmt: skip
        elif worst.share >= 1:
            yield Finding(
                CHECK_ID, Severity.WARNING, "mailbox", ident.object_id, "Source mailbox is at or over its quota",
                observed=worst.describe(), expected="usage below the limit",
                evidence=with_identity(ident, listed),
                remediation="It may be refusing new mail now (bounces users will blame on the cutover): "
                "raise the quota on the source or have the user clean up before the wave; the copy itself "
                "reads it fine.",
            )  # fmt: skip
        elif worst.share >= NEARLY_FULL:
            yield Finding(
                CHECK_ID, Severity.INFO, "mailbox", ident.object_id, "Source mailbox is nearly full",
                observed=worst.describe(), expected=f"usage below {NEARLY_FULL:.0%} of the limit",
                evidence=with_identity(ident, listed),
                remediation="Raise the quota on the source until the cutover, or it will start refusing mail.",
            )  # fmt: skip
        else:
            yield Finding(
                CHECK_ID, Severity.PASS, "mailbox", ident.object_id, "Source mailbox below its quota",
                observed=worst.describe(), evidence=with_identity(ident, listed),
            )  # fmt: skip

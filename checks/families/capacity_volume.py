"""TGT-QUOTA-003 and TGT-STORE-004: will the surveyed volume fit the target's quotas and databases?

Both keep ``headroom`` free: a mailbox may fill its quota to ``quota x (1 - headroom)``, a
database its storage likewise. Volumes are the sum of the messages' RFC822.SIZE in the survey.
A mailbox the survey could not (fully) read is "info" for the quota (the source checks report
why) and makes a database total a lower bound: a warning unless it is over already.
"""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase

from checks.context import CheckContext
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.survey import MailboxSurvey, survey
from checks.volume import exact_bytes, human_bytes, survey_gap, total
from runners.plan.readiness_parts import Database

QUOTA_ID = "TGT-QUOTA-003"
STORE_ID = "TGT-STORE-004"


@check(QUOTA_ID, "Each mailbox fits its target quota with headroom", category="capacity", phase="pre")
def mailbox_quota(ctx: CheckContext) -> Iterator[Finding]:
    settings = ctx.plan.readiness.capacity
    quota = settings.mailbox_quota_bytes
    if quota is None:
        raise SkipCheck("no [capacity] mailbox_quota_bytes in the plan")
    allowed = int(quota * (1 - settings.headroom))
    expected = (
        f"at most {exact_bytes(allowed)}: {settings.headroom:.0%} headroom on a quota of {exact_bytes(quota)}"
    )
    for box in survey(ctx).mailboxes:
        target, used = box.entry.target, box.bytes
        share = f"{used / quota:.0%} of the quota"
        gap = survey_gap(box)
        evidence = (
            f"source {box.entry.source}: {box.messages} messages, {used} bytes in {len(box.folders)} folders"
        )
        if used > allowed:
            yield Finding(
                QUOTA_ID, Severity.BLOCKER, "mailbox", target, f"{target} does not fit its quota",
                observed=f"{exact_bytes(used)} to migrate, {share}" + (f" (at least: {gap})" if gap else ""),
                expected=expected, evidence=evidence,
                remediation="Raise this mailbox's quota on the target, archive or clean up before the "
                "migration, or exclude folders in [folders] exclude.",
            )  # fmt: skip
        elif gap is not None:
            yield Finding(
                QUOTA_ID, Severity.INFO, "mailbox", target, f"{target}: volume not fully known",
                observed=f"at least {exact_bytes(used)}, {share}; {gap}", expected=expected, evidence=evidence,
            )  # fmt: skip
        else:
            yield Finding(
                QUOTA_ID, Severity.PASS, "mailbox", target, f"{target} fits its quota ({share})",
                observed=f"{exact_bytes(used)} to migrate, {share}", expected=expected, evidence=evidence,
            )  # fmt: skip


@check(STORE_ID, "Each target database has room for the mailboxes planned onto it", category="capacity",
       phase="pre")  # fmt: skip
def database_storage(ctx: CheckContext) -> Iterator[Finding]:
    settings = ctx.plan.readiness.capacity
    if not settings.databases:
        raise SkipCheck("no [capacity] databases in the plan")
    placed, unplaced = place(survey(ctx).mailboxes, settings.databases)
    for database in settings.databases:
        yield _database_finding(database, placed[database.name], settings.headroom)
    if unplaced:
        names = ", ".join(b.entry.target for b in unplaced[:10]) + (" ..." if len(unplaced) > 10 else "")
        volume = total(unplaced)
        yield Finding(
            STORE_ID, Severity.WARNING, "database", "(none)", f"{len(unplaced)} mailbox(es) on no database",
            observed=f"{len(unplaced)} mailbox(es), {exact_bytes(volume.bytes)}, match no database pattern: {names}",
            expected="every target address matched by one database's mailboxes patterns",
            evidence="\n".join(f"{b.entry.target}: {b.bytes} bytes" for b in unplaced),
            remediation="Add the mailboxes to a database's patterns in [capacity] databases.",
        )  # fmt: skip


def place(
    boxes: list[MailboxSurvey], databases: tuple[Database, ...]
) -> tuple[dict[str, list[MailboxSurvey]], list[MailboxSurvey]]:
    """Each mailbox goes to the first database whose patterns match its target address (no
    patterns = any address), in plan order; the rest are unplaced."""
    placed: dict[str, list[MailboxSurvey]] = {d.name: [] for d in databases}
    unplaced: list[MailboxSurvey] = []
    for box in boxes:
        address = box.entry.target.lower()
        home = next(
            (
                d
                for d in databases
                if not d.mailboxes or any(fnmatchcase(address, p.lower()) for p in d.mailboxes)
            ),
            None,
        )
        (placed[home.name] if home else unplaced).append(box)
    return placed, unplaced


def _database_finding(database: Database, boxes: list[MailboxSurvey], headroom: float) -> Finding:
    volume = total(boxes)
    allowed = int(database.storage_bytes * (1 - headroom))
    share = f"{volume.bytes / database.storage_bytes:.0%} of its storage"
    expected = (
        f"at most {exact_bytes(allowed)}: {headroom:.0%} headroom on {exact_bytes(database.storage_bytes)}"
    )
    largest = sorted(boxes, key=lambda b: b.bytes, reverse=True)[:5]
    evidence = f"{volume.mailboxes} mailbox(es), {volume.messages} messages; largest: " + (
        ", ".join(f"{b.entry.target} {human_bytes(b.bytes)}" for b in largest) or "none"
    )
    observed = f"{exact_bytes(volume.bytes)} planned, {share}"
    if volume.bytes > allowed:
        return Finding(
            STORE_ID, Severity.BLOCKER, "database", database.name, f"{database.name} is too small for its mailboxes",
            observed=observed + ("" if volume.complete else f" ({volume.gap_note()})"),
            expected=expected, evidence=evidence,
            remediation="Add storage, or move mailboxes to another database (their patterns in [capacity] databases).",
        )  # fmt: skip
    if not volume.complete:
        return Finding(
            STORE_ID, Severity.WARNING, "database", database.name, f"{database.name}: planned volume not fully known",
            observed=f"{observed}, {volume.gap_note()}", expected=expected, evidence=evidence,
            remediation="Fix the survey errors (see the source checks) and run the check again.",
        )  # fmt: skip
    return Finding(
        STORE_ID, Severity.PASS, "database", database.name, f"{database.name} has room ({share})",
        observed=observed, expected=expected, evidence=evidence,
    )  # fmt: skip

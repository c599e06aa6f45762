"""TGT-SIZE-006: no source message is larger than the target accepts.

The target's limit is the smaller of the plan's ``[target] max_message_bytes`` and the APPENDLIMIT
an IMAP target advertises (RFC 7889: ``APPENDLIMIT=n`` in CAPABILITY after login, or a bare
``APPENDLIMIT`` with the limit per folder, asked for INBOX with STATUS). One finding per mailbox:
a blocker listing every oversized message (folder, UID, size), else a pass with its largest one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from checks.canary import canary as canary_of
from checks.context import CheckContext
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.survey import MailboxSurvey, survey
from checks.volume import exact_bytes, survey_gap
from runners.connectors.credentials import user_password
from runners.connectors.imap_login import open_imap
from runners.imap.wire import ImapConnection
from runners.plan.model import Plan

CHECK_ID = "TGT-SIZE-006"
#: Oversized messages listed per mailbox in the evidence; the count is always complete.
LISTED = 50


@dataclass(frozen=True, slots=True)
class Limit:
    size: int
    source: str  # where it comes from, with the server's own words for APPENDLIMIT


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
        yield _mailbox_finding(ctx.plan, box, limit, limits_text)


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
    """Log in as the canary's target user (capabilities after login are the real ones)."""
    endpoint, canary = ctx.plan.target, canary_of(ctx.plan)
    with ctx.server(f"target:{endpoint.address}"):
        conn = open_imap(
            endpoint, canary.target, user_password(endpoint, canary.target, canary.target_password)
        )
        try:
            return _ask_appendlimit(conn, canary.target)
        finally:
            conn.close()


def _ask_appendlimit(conn: ImapConnection, user: str) -> Limit | None:
    reply = conn.check(b"CAPABILITY", "CAPABILITY")
    line = next(
        (
            p[0].decode("utf-8", "replace").strip()
            for p in reply.untagged
            if p[0].startswith(b"* CAPABILITY ")
        ),
        "",
    )
    words = [w for w in line.split()[2:] if w.upper().startswith("APPENDLIMIT")]
    if not words:
        return None
    _, _, value = words[0].partition("=")
    if value.isdigit():
        return Limit(int(value), f"{conn.server} after login as {user}: {line}")
    # Bare APPENDLIMIT: the limit differs per folder; INBOX stands for the mailbox.
    status = conn.check(b'STATUS "INBOX" (APPENDLIMIT)', "STATUS INBOX (APPENDLIMIT)")
    for parts in status.untagged:
        text = parts[0].decode("utf-8", "replace").strip()
        tokens = text.replace("(", " ").replace(")", " ").split()
        if "APPENDLIMIT" in (t.upper() for t in tokens):
            found = tokens[[t.upper() for t in tokens].index("APPENDLIMIT") + 1]
            if found.isdigit():
                return Limit(int(found), f"{conn.server} after login as {user}: {line}\n{text}")
    return None


def _mailbox_finding(plan: Plan, box: MailboxSurvey, limit: Limit, limits_text: str) -> Finding:
    mailbox = box.entry.source
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
            expected=expected, evidence="\n".join([*lines, limits_text]),
            remediation="Raise the target's limit for the migration, or have the users save the "
            "attachments elsewhere; the engine skips these messages with their reason otherwise.",
        )  # fmt: skip
    if gap is not None:
        return Finding(
            CHECK_ID, Severity.INFO, "mailbox", mailbox, f"{mailbox}: message sizes not fully known",
            observed=gap, expected=expected, evidence=limits_text,
        )  # fmt: skip
    return Finding(
        CHECK_ID, Severity.PASS, "mailbox", mailbox, f"{mailbox}: every message fits the target's limit",
        observed=f"largest message {exact_bytes(box.largest)}", expected=expected, evidence=limits_text,
    )  # fmt: skip

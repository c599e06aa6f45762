"""The IMAP target keeps the flags a copy is given (TGT-FLAGS-024), per mailbox, from its INBOX's
PERMANENTFLAGS (``checks.targetprobe``).

A server takes an APPEND with flags it won't keep and drops them without a word: an account
without the ACL right to set flags (Dovecot's "w") keeps only \\Seen and \\Deleted; some services
take no keywords. The run would copy every message and lose its \\Flagged, \\Answered or labels;
verify would then list each message as different. Said here, before anything moves.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.target_imap import not_probed
from checks.model import Finding, Severity
from checks.registry import check
from checks.targetprobe import PermanentFlags, TargetProbe, imap_target_probes
from runners.model import SYSTEM_FLAGS

FLAGS_ID = "TGT-FLAGS-024"
#: In PERMANENTFLAGS: new keywords may be created (RFC 3501 7.1).
ANY_KEYWORD = "\\*"

_RIGHTS = (
    "Give the migration account the right to set flags in the target mailboxes (IMAP ACL right "
    '"w"; on Dovecot, the ACL of the master user or of the mailbox), then run the check again.'
)
_KEYWORDS = (
    "If users rely on labels (keywords such as $Label1, Junk/NonJunk), give the migration account "
    "the right to create keywords on the target; otherwise accept that they are left off (verify "
    "lists each labelled message as different)."
)


@check(FLAGS_ID, "The target keeps the flags a copy is given", category="target")
def target_flags(ctx: CheckContext) -> Iterator[Finding]:
    for probe in imap_target_probes(ctx):
        yield _finding(probe)


def _finding(probe: TargetProbe) -> Finding:
    mailbox = probe.entry.target
    if (no_login := not_probed(FLAGS_ID, "Flags", probe)) is not None:
        return no_login
    if probe.permanent is None:
        why = probe.flags_error or probe.broken or "the probe broke off before SELECT INBOX"
        title = "SELECT INBOX failed" if probe.flags_error else "the probe broke off"
        return Finding(
            FLAGS_ID, Severity.WARNING, "mailbox", mailbox, f"Flags not probed: {title}",
            observed=why, evidence=why,
            remediation="Run the check again; if it persists, look at the target's log for this mailbox.",
        )  # fmt: skip
    return _judged(mailbox, probe.permanent)


def _judged(mailbox: str, permanent: PermanentFlags) -> Finding:
    if not permanent.announced:
        return Finding(
            FLAGS_ID, Severity.PASS, "mailbox", mailbox, "Keeps every flag",
            observed="SELECT INBOX names no PERMANENTFLAGS: every flag may be set (RFC 3501 7.1)",
        )  # fmt: skip
    kept = {flag.casefold() for flag in permanent.flags}
    dropped = [flag for flag in SYSTEM_FLAGS if flag.casefold() not in kept]
    expected = "PERMANENTFLAGS (" + " ".join((*SYSTEM_FLAGS, ANY_KEYWORD)) + ")"
    if dropped:
        return Finding(
            FLAGS_ID, Severity.BLOCKER, "mailbox", mailbox,
            f"The target would drop {' '.join(dropped)} from every copy",
            observed=permanent.line, expected=expected, evidence=permanent.line,
            remediation=_RIGHTS,
        )  # fmt: skip
    if ANY_KEYWORD not in permanent.flags:
        return Finding(
            FLAGS_ID, Severity.WARNING, "mailbox", mailbox,
            "The target keeps no keywords of its own: labels are left off the copies",
            observed=permanent.line, expected=expected, evidence=permanent.line,
            remediation=_KEYWORDS,
        )  # fmt: skip
    return Finding(
        FLAGS_ID, Severity.PASS, "mailbox", mailbox, "Keeps every flag and keyword",
        observed=permanent.line,
    )  # fmt: skip

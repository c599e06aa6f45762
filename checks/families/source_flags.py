"""SRC-FLAGS-045: every flag of the source can be given to the target.

A copy goes without a flag no target server would keep: a Maildir keyword letter that the folder's
``dovecot-keywords`` doesn't name, and for an IMAP target a keyword that isn't an atom or a ``\\``
flag IMAP doesn't define. The run records each as it copies (``runners.engine.left_off``); this
says so before anything moves, from the source pass's listing. One finding per mailbox.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.identity import identity, with_identity
from checks.model import Finding, Severity
from checks.registry import check
from checks.survey import survey
from runners.adapters import target_capabilities
from runners.engine import left_off

CHECK_ID = "SRC-FLAGS-045"
#: Lines of evidence per mailbox; the count in the title is always complete.
LISTED = 20


@check(CHECK_ID, "Every flag of the source can be given to the target", category="source")
def source_flags(ctx: CheckContext) -> Iterator[Finding]:
    imap_flags = target_capabilities(ctx.plan.target.type).imap_flags
    for box in survey(ctx).mailboxes:
        if box.error is not None:
            continue  # SRC-LOGIN-002 reports the mailbox itself
        ident = identity(ctx, box.entry)
        lines: list[str] = []
        carried = 0
        for folder in box.folders:
            notes = [*folder.left_off, *(left_off.unsettable(folder.metas) if imap_flags else [])]
            carried += folder.messages
            lines += [f"{folder.folder.display}: {left_off.describe(note)}" for note in notes]
        if not lines:
            yield Finding(
                CHECK_ID, Severity.PASS, "mailbox", ident.object_id, "Every flag can be given to the target",
                observed=f"none left off among {carried} messages", evidence=with_identity(ident),
            )  # fmt: skip
            continue
        shown = lines[:LISTED] + ([f"... and {len(lines) - LISTED} more"] if len(lines) > LISTED else [])
        yield Finding(
            CHECK_ID, Severity.WARNING, "mailbox", ident.object_id,
            f"{len(lines)} flag(s) the copies will go without",
            observed=f"{len(lines)} flag(s) left off, among {carried} messages",
            expected="every flag a name the target can keep",
            evidence=with_identity(ident, "\n".join(shown)),
            remediation="Name the keyword letters in the folder's dovecot-keywords, rename on the source "
            "the keywords the target can't hold, or accept the loss: each run records the messages that "
            "went without them as a 'left-off' warning.",
        )  # fmt: skip

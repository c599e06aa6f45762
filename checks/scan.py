"""The source scan's results: every message read once, looking for what breaks migrations.

Shared by the SRC-READ, SRC-LINE, SRC-MIME, SRC-MSGID and SRC-CATCH checks. The reading itself is
part of the source pass (``checks.survey``), on the session the survey opened; the per-message
work is ``checks.message_scan``.
"""

from __future__ import annotations

from checks.context import CheckContext
from checks.message_scan import MAX_LINE, MailboxScan, MessageProblem
from checks.registry import SkipCheck
from checks.survey import source_pass

__all__ = ["MAX_LINE", "MailboxScan", "MessageProblem", "scan"]


def scan(ctx: CheckContext) -> list[MailboxScan]:
    """The scan of every mailbox the survey could open, computed once per run."""
    if not ctx.plan.readiness.scan:
        raise SkipCheck("[checks] scan = false: the source messages are not read")
    scans = source_pass(ctx).scans
    assert scans is not None  # scanned whenever [checks] scan is on
    return scans

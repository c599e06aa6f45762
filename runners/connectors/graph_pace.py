"""Each mailbox's share of Graph's budget, one ``runners.pacing.Pace`` per mailbox for the process.

Microsoft limits an app per mailbox: 4 requests in flight, 10,000 requests per 10 minutes and 150 MB
of upload per 5 minutes (https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits);
the plan may lower or raise them (``pace_*`` keys). Every session of the mailbox, and the readiness
checks, go through the same ``Pace``, so that together they stay inside it.
"""

from __future__ import annotations

from runners.pacing import Budget, Pace, pace_for
from runners.plan.graph_options import GraphOptions


def graph_budget(options: GraphOptions) -> Budget:
    """The budget. A request is counted from when it leaves until a window after its answer came:
    the service counts it when it arrives, somewhere in between (each request of a ``$batch`` when
    it runs, which under load can be seconds after the batch left), so two requests our windows
    let go a window apart are at least a window apart for the service too, whatever the latency.
    (A fixed slack of a second let three 429s through with 8 mailboxes on a loaded machine.)"""
    return Budget(
        concurrency=options.pace_concurrency,
        requests=(options.pace_requests, options.pace_request_window),
        upload_bytes=(options.pace_upload_bytes, options.pace_upload_window),
        counted_until_answer=True,
    )


def graph_pace(mailbox: str, options: GraphOptions) -> Pace:
    """The pace of ``mailbox`` (compared without case, as Exchange does)."""
    return pace_for(f"graph:{mailbox.lower()}", graph_budget(options))

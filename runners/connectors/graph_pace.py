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
    """The budget, each window a little longer than the service's: we count a request when it
    leaves, the service when it arrives, and two requests a window apart by our clock may arrive
    less than a window apart by its clock."""
    return Budget(
        concurrency=options.pace_concurrency,
        requests=(options.pace_requests, options.pace_request_window + slack(options.pace_request_window)),
        upload_bytes=(
            options.pace_upload_bytes,
            options.pace_upload_window + slack(options.pace_upload_window),
        ),
    )


def slack(window: float) -> float:
    """1 % of the window, at least a second: 6 s of Microsoft's 10 minutes."""
    return max(1.0, window / 100)


def graph_pace(mailbox: str, options: GraphOptions) -> Pace:
    """The pace of ``mailbox`` (compared without case, as Exchange does)."""
    return pace_for(f"graph:{mailbox.lower()}", graph_budget(options))

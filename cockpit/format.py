"""Small text formatters shared by the views (pure, unit-tested)."""

from __future__ import annotations

import time

MB = 1_000_000


def bar(fraction: float, width: int = 10) -> str:
    """A text progress bar: cheaper than a widget per row and readable in 16 colours."""
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return "█" * filled + "░" * (width - filled)


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    seconds = max(0, int((now or time.time()) - ts))
    if seconds < 60:
        return "<1m"  # second-level churn would repaint thousands of idle rows twice a second
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"

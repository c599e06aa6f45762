"""Small text formatters shared by the views (pure, unit-tested)."""

from __future__ import annotations

import time

from runners.safe_text import safe, safe_lines

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


def window_left(window_hours: float | None, since: float | None, now: float | None = None) -> float | None:
    """Seconds left in the cutover window that opened at ``since`` (None: no window or not running)."""
    if not window_hours or since is None:
        return None
    return window_hours * 3600 - ((now or time.time()) - since)


def eta_against_window(
    eta: float | None, left: float | None, window_hours: float | None = None
) -> tuple[str, bool]:
    """The ETA said against the window: (text, whether the remaining copy will not fit)."""
    if left is None:  # nothing running: the window's length, as planned
        return (f"window {window_hours:g} h" if window_hours else ""), False
    if left <= 0:
        return f"window over by {duration(-left)}", True
    if eta is None:
        return f"window: {duration(left)} left", False
    if eta > left:
        return f"window: {duration(left)} left, ETA over by {duration(eta - left)}", True
    return f"window: {duration(left)} left, fits with {duration(left - eta)} to spare", False


def cell(text: object) -> str:
    """Text from outside (a folder name, a server's words) for one cell or line of a view: known
    secrets scrubbed, controls shown instead of obeyed, CR LF shown (``runners.safe_text``)."""
    return safe(text)


def block(text: str) -> str:
    """Like ``cell`` for a view's multi-line text that we composed: its own newlines stay."""
    return safe_lines(text)

"""Small text formatters shared by the views (pure, unit-tested)."""

from __future__ import annotations

import time

from runners.safe_text import safe, safe_lines

MB = 1_000_000


def bar(fraction: float, width: int = 10) -> str:
    """A text progress bar: cheaper than a widget per row and readable in 16 colours."""
    # Rounded down: a bar is full only when everything is done.
    filled = int(max(0.0, min(fraction, 1.0)) * width)
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


#: A mark before each mailbox state, so states differ without colour (NO_COLOR) and at a glance.
STATE_MARKS = {
    "failed": "✗",
    "partial": "!",
    "cancelled": "■",
    "paused": "‖",
    "running": "▶",
    "pending": "·",
    "ok": "✓",
}


def state_label(state: str) -> str:
    """ "✗ failed", "▶ running": the state with its mark."""
    return f"{STATE_MARKS.get(state, '?')} {state}"


def tone(state: str, failed: int = 0, skipped: int = 0, error: bool = False) -> str:
    """How a row stands out: "error" (failed, or anything failed in it), "warning" (partial, skipped,
    paused, cancelled) or "" (nothing to look at)."""
    if state == "failed" or failed or error:
        return "error"
    if state in ("partial", "paused", "cancelled") or skipped:
        return "warning"
    return ""


def states_text(states: dict[str, int]) -> str:
    """A wave's mailboxes by state, the ones needing a look first: "1 running, 1 failed, 2 ok"."""
    order = ("running", "failed", "partial", "paused", "cancelled", "pending", "ok")
    known = [s for s in order if states.get(s)] + sorted(s for s in states if s not in order and states[s])
    return ", ".join(f"{states[s]} {s}" for s in known) or "none"


def percent(fraction: float) -> str:
    """ "41%", rounded down: 99.6 % copied is not "100%"."""
    return f"{int(max(0.0, min(fraction, 1.0)) * 100):3d}%"


def count(n: int) -> str:
    """A count that fits a narrow column: "9,840", "123k", "1.2M"."""
    if n < 100_000:
        return f"{n:,}"
    if n < 10_000_000:
        return f"{n / 1000:,.0f}k" if n < 1_000_000 else f"{n / 1_000_000:.1f}M"
    return f"{n / 1_000_000:,.0f}M"


def volume(size: float) -> str:
    """Bytes as an operator reads them: "420 MB", "1.3 GB"."""
    if size >= 1000 * MB:
        return f"{size / (1000 * MB):,.1f} GB"
    return f"{size / MB:,.0f} MB" if size >= 10 * MB else f"{size / MB:,.1f} MB"


def cell(text: object) -> str:
    """Text from outside (a folder name, a server's words) for one cell or line of a view: known
    secrets scrubbed, controls shown instead of obeyed, CR LF shown (``runners.safe_text``)."""
    return safe(text)


def block(text: str) -> str:
    """Like ``cell`` for a view's multi-line text that we composed: its own newlines stay."""
    return safe_lines(text)

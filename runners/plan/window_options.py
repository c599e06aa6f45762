"""The plan's ``[window]`` section: the cutover window a wave's final pass and switch must fit in.

``start`` (an ISO 8601 time with its offset, optional) is when the window opens; ``hours`` its
length (default: ``[capacity] window_hours``, which the readiness checker's estimate uses too);
``lease_seconds`` how long one operator's hold on a wave's switch lasts without a renewal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runners.plan.tables import Table

WINDOW_KEYS = ("start", "hours", "lease_seconds")


@dataclass(frozen=True, slots=True)
class WindowSettings:
    #: When the window opens (aware datetime), or None: the clock starts with the final pass.
    start: datetime | None = None
    #: The window's length in hours; None: take ``[capacity] window_hours``.
    hours: float | None = None
    lease_seconds: float = 300.0


def load_window(root: Table) -> WindowSettings:
    """``[window]`` (defaults when absent). Raises ``PlanError`` naming file, line and key."""
    table = root.table("window")
    if table is None:
        return WindowSettings()
    table.check_keys(WINDOW_KEYS)
    return WindowSettings(
        start=_start(table),
        hours=table.positive_number("hours", 0.0) or None,
        lease_seconds=table.positive_number("lease_seconds", 300.0),
    )


def _start(table: Table) -> datetime | None:
    text = table.string("start")
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise table.error("start", f'"{text}" is not an ISO 8601 time (2026-12-06T22:00:00+01:00)') from None
    if when.tzinfo is None:
        raise table.error("start", f'"{text}" has no UTC offset: add one (Z, +01:00)')
    return when

"""The plan's ``[window]`` section: the cutover window a wave's final pass and switch must fit in.

``start`` (an ISO 8601 time with its offset, optional) is when the window opens; ``hours`` its
length (default: ``[capacity] window_hours``, which the readiness checker's estimate uses too);
``lease_seconds`` how long one operator's hold on a wave's switch lasts without a renewal.
The settled step's keys: ``probe_mx`` (``host:port``, the MX the probe goes through), its
``probe_deadline_seconds`` and ``probe_poll_seconds``, ``late_mail_quiet_minutes`` and
``late_mail_interval_seconds`` (the late-mail loop), ``post_checks`` (run the post-phase checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from runners.plan.tables import Table

if TYPE_CHECKING:  # a plan without [switch] or [window] probe_mx never loads the switch's model
    from runners.plan.switch_model import HostPort

WINDOW_KEYS = ("start", "hours", "lease_seconds", "probe_mx", "probe_deadline_seconds", "probe_poll_seconds",
               "late_mail_quiet_minutes", "late_mail_interval_seconds", "post_checks")  # fmt: skip


@dataclass(frozen=True, slots=True)
class WindowSettings:
    #: When the window opens (aware datetime), or None: the clock starts with the final pass.
    start: datetime | None = None
    #: The window's length in hours; None: take ``[capacity] window_hours``.
    hours: float | None = None
    lease_seconds: float = 300.0
    #: The MX the settled step's probe goes through; None: the first MX the switch set (port 25).
    probe_mx: HostPort | None = None
    probe_deadline_seconds: float = 120.0
    probe_poll_seconds: float = 1.0
    #: The late-mail loop ends once the legacy stayed quiet this long.
    late_mail_quiet_minutes: float = 30.0
    late_mail_interval_seconds: float = 60.0
    #: Whether settled runs the post-phase readiness checks (the command layer runs them).
    post_checks: bool = True


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
        probe_mx=_probe_mx(table),
        probe_deadline_seconds=table.positive_number("probe_deadline_seconds", 120.0),
        probe_poll_seconds=table.positive_number("probe_poll_seconds", 1.0),
        late_mail_quiet_minutes=table.positive_number("late_mail_quiet_minutes", 30.0),
        late_mail_interval_seconds=table.positive_number("late_mail_interval_seconds", 60.0),
        post_checks=table.boolean("post_checks", True),
    )


def _probe_mx(table: Table) -> HostPort | None:
    text = table.string("probe_mx")
    if text is None:
        return None
    # host, host:port, [v6] or [v6]:port (a bare v6 address has more than one colon: no port).
    host, port = text, ""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
        if not closed or (rest and not rest.startswith(":")):
            host = ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise table.error("probe_mx", f'"{text}" is not host or host:port')
    from runners.plan.switch_model import HostPort

    return HostPort(host, int(port) if port else 25)


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

"""The steps after the switch that are not built yet: each refuses, naming what it waits for.

``settled`` will call the SMTP probe and the late-mail loop, ``closed`` the wave report, ``rolled
back`` the rollback copy (built beside this, on branch wt-settle); the driver calls these hooks.
"""

from __future__ import annotations

from runners.errors import MigrationError


class NotBuiltYet(MigrationError):
    """A step of the window whose work is not built yet: nothing was changed."""


#: Each pending step, and what it will call once it exists.
PENDING_STEPS = {
    "settle": "settled: post-switch checks, the SMTP probe through the new MX and the late-mail loop",
    "close": "closed: the wave's report for sign-off (Markdown and JSON)",
    "rollback": "rolled back: routing back to the legacy and the rollback copy",
}


def refuse_pending(step: str) -> None:
    """Raise ``NotBuiltYet`` for ``step`` (one of ``PENDING_STEPS``)."""
    raise NotBuiltYet(f"{PENDING_STEPS[step]}: not built yet (issue #11); nothing was changed")

"""``[[waves]]``: the plan's waves in the order the operator means, and which of them are pilots.

Optional. Without it the waves are those of the mailbox list, in the order they first appear there,
and none is a pilot. With it, every wave of the mailbox list is declared exactly once (a wave name
with a typo in the CSV, or in ``[[waves]]``, is an error, not a wave of its own), in the order the
cockpit shows them. ``pilot = true`` marks a wave the cockpit launches after a plain yes; any other
wave needs its name typed. ``start = "on-login"`` marks a wave whose mailboxes the routing proxy queues
at their user's first login through it (the seed's real-time migration); a run copies only those.
"""

from __future__ import annotations

from collections.abc import Sequence

from runners.plan.model import MailboxEntry, WaveSettings
from runners.plan.tables import Table, did_you_mean, type_name

WAVE_KEYS = ("name", "pilot", "start")
#: ``start``: "launch" (an operator launches the wave) or "on-login" (the proxy queues each mailbox
#: at its user's first login; a run copies the queued ones).
WAVE_STARTS = ("launch", "on-login")


def load_waves(root: Table, mailboxes: Sequence[MailboxEntry]) -> tuple[WaveSettings, ...]:
    """The ``[[waves]]`` entries in order, each a wave of ``mailboxes``; ``()`` when there are none."""
    items = root.array("waves")
    if items is None:
        return ()
    first_row: dict[str, MailboxEntry] = {}
    for entry in mailboxes:
        first_row.setdefault(entry.wave, entry)
    out: list[WaveSettings] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise root.error("waves", f"item {index + 1} must be a table ([[waves]]), got {type_name(item)}")
        table = Table(root.doc, ("waves", index), item)
        table.check_keys(WAVE_KEYS)
        name = table.required_string("name")
        if any(w.name == name for w in out):
            raise table.error("name", f'wave "{name}" is declared twice')
        if name not in first_row:
            raise table.error(
                "name", f'no mailbox of the mailbox list is in wave "{name}"{did_you_mean(name, first_row)}'
            )
        start = table.choice("start", WAVE_STARTS, default="launch")
        out.append(WaveSettings(name, pilot=table.boolean("pilot", False), on_login=start == "on-login"))
    declared = {w.name for w in out}
    for wave, entry in first_row.items():
        if wave not in declared:
            raise root.error(
                "waves",
                f'wave "{wave}" ({entry.origin}) is not declared: with [[waves]], every wave of the '
                f"mailbox list is declared once{did_you_mean(wave, declared)}",
            )
    return tuple(out)

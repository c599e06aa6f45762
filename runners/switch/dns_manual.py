"""Without a primary or key: the exact records an operator changes by hand, as zone-file lines.

The current records are read from one authoritative server of the zone, so the instructions say
what to remove as well as what to add; ``dns_confirm.confirm`` then waits for the change to appear
everywhere, exactly as after an update the tool sent itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runners.switch.dns_query import AuthServer
from runners.switch.dns_update import Change, pending_changes
from runners.switch.records import DesiredRRset, zone_lines


@dataclass(frozen=True, slots=True)
class ManualChange:
    zone: str
    label: str
    #: Zone-file lines of the records to remove (what the server serves now at the name).
    remove: tuple[str, ...]
    #: Zone-file lines of the records to add.
    add: tuple[str, ...]


def manual_changes(
    server: AuthServer, desired: Sequence[DesiredRRset], timeout: float
) -> tuple[ManualChange, ...]:
    """What differs on ``server`` (an authoritative server of the zones), as lines to remove and add.

    Raises ``DnsQueryError`` when the server can't be read.
    """
    return tuple(_manual(c) for c in pending_changes(server, desired, timeout))


def _manual(change: Change) -> ManualChange:
    desired = change.desired
    remove = [line for rdataset in change.before.values() if rdataset is not None
              for line in zone_lines(desired.name, rdataset)]  # fmt: skip
    return ManualChange(desired.zone.to_text(), desired.label, tuple(remove), tuple(desired.zone_lines()))


def instructions(changes: Sequence[ManualChange]) -> str:
    """The changes as text to paste: per zone, the lines to delete (commented) and the lines to add."""
    if not changes:
        return "; every record is already as the switch wants it: nothing to change\n"
    out: list[str] = []
    for zone in dict.fromkeys(c.zone for c in changes):
        out.append(f"; zone {zone}: the records the switch needs (then bump the SOA serial)")
        for change in (c for c in changes if c.zone == zone):
            out += [f"; remove: {line}" for line in change.remove]
            out += list(change.add)
    return "\n".join(out) + "\n"

"""DNS for a rollback: make true again what the switch recorded as served ``before`` its update.

The switch recorded, before sending anything, each RRset's records before and after (the
``switch:dns-update`` row's parameters). A rollback reads the primary: an RRset already back is left
alone (a resumed rollback sends nothing twice); one that still serves what the switch set is put
back in a signed UPDATE whose prerequisites are exactly those records, so a change someone made
since the switch is refused by the server rather than overwritten; anything else is left alone and
named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from runners.plan.switch_model import SwitchDns
from runners.state.store import StateStore
from runners.switch.dns_query import served_at
from runners.switch.dns_update import Change, Primary, send_update
from runners.switch.records import DesiredRRset, rdata_texts, records_for, zone_lines
from runners.window.stages import SWITCH_DNS_UPDATE, Stage


@dataclass(frozen=True, slots=True)
class RecordedChange:
    """One RRset the switch changed: the records it served before and the ones the switch set."""

    label: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(slots=True)
class RestorePlan:
    #: The RRsets to make true again (what was served before the switch).
    restore: list[DesiredRRset] = field(default_factory=list)
    #: Why an RRset the switch changed can't be restored by the rollback (each one line).
    problems: list[str] = field(default_factory=list)


def recorded_changes(store: StateStore, wave: str) -> list[RecordedChange]:
    """What the latest switch of ``wave`` changed in DNS, from its first ``switch:dns-update``
    attempt since the final pass (recorded before the UPDATE was sent, so a switch that was killed
    after sending still has it; a resumed switch's own row says ``before`` = ``after``)."""
    rows = store.wave_steps(wave)
    last_pass = max(
        (i for i, r in enumerate(rows) if r.step == Stage.FINAL_PASS and r.status == "done"), default=-1
    )
    for row in rows[last_pass + 1 :]:
        if row.step == SWITCH_DNS_UPDATE and "changes" in row.params:
            return [
                RecordedChange(c["label"], tuple(c["before"]), tuple(c["after"]))
                for c in row.params["changes"]
            ]
    return []


def restore_plan(settings: SwitchDns, changes: Sequence[RecordedChange]) -> RestorePlan:
    """The RRsets to put back, each built from the plan's zone and TTL for its name."""
    known = {r.label: r for r in records_for(settings.domains, settings.ttl)}
    out = RestorePlan()
    for change in changes:
        switched = known.get(change.label)
        if switched is None:
            out.problems.append(
                f"dns: {change.label}: no longer in the plan's [switch.dns]: restore it by hand"
            )
        elif not change.before:
            out.problems.append(f"dns: {change.label}: had no records before the switch: remove "
                                f"{', '.join(change.after)} by hand")  # fmt: skip
        else:
            rdatas = tuple(dns.rdata.from_text(dns.rdataclass.IN, switched.rdtype, t) for t in change.before)
            out.restore.append(
                DesiredRRset(switched.zone, switched.name, switched.rdtype, rdatas, settings.ttl)
            )
    return out


def send_restore(
    primary: Primary, restore: Sequence[DesiredRRset], changes: Sequence[RecordedChange]
) -> dict[str, Any]:
    """Read the primary, then one signed UPDATE per zone for what still serves the switch's records.
    Returns what was sent and what was left alone (with what the primary serves instead)."""
    after = {c.label: c.after for c in changes}
    send: list[Change] = []
    already, changed_since = [], []
    for rrset in restore:
        served = served_at(primary.server, rrset.name, (rrset.rdtype,), primary.timeout)
        now = rdata_texts(served[rrset.rdtype])
        if rrset.served_by(served[rrset.rdtype]):
            already.append(rrset.label)
        elif sorted(now) == sorted(after.get(rrset.label, ())):
            send.append(Change(rrset, served))  # prerequisite: exactly what the switch set
        else:
            changed_since.append({"label": rrset.label, "serves": list(now)})
    by_zone: dict[dns.name.Name, list[Change]] = {}
    for change in send:
        by_zone.setdefault(change.desired.zone, []).append(change)
    for zone, zone_changes in by_zone.items():
        send_update(primary, zone, zone_changes)
    return {"primary": primary.server.endpoint, "sent": [c.desired.label for c in send],
            "already_restored": already, "changed_since_switch": changed_since}  # fmt: skip


def manual_restore(restore: Sequence[DesiredRRset]) -> str:
    """The zone-file lines to put back, for a plan without a primary and key."""
    lines = []
    for rrset in restore:
        lines.append(f"; {rrset.label}: replace what the switch set by")
        lines += zone_lines(rrset.name, rrset.rdataset())
    return "\n".join(lines)

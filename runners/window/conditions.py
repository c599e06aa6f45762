"""What a wave must satisfy before its window: each condition checked and listed, held or not.

``ready`` checks all five (the fifth: whether a rollback could copy mail back, said before the
switch, not after); the final pass and the switch check the two interlocks again
(``undecided-failures`` and ``readiness-blockers``) since a pass can leave new failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from runners.plan.model import MailboxEntry, Plan
from runners.settle.rollback import rollback_readiness
from runners.state.statuses import MailboxState
from runners.state.store import StateStore

#: How many names a condition's detail lists before it says "and N more".
_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    holds: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{'ok ' if self.holds else 'NO '} {self.name}: {self.detail}"


def ready_conditions(plan: Plan, store: StateStore, wave: str) -> list[Condition]:
    """Everything ``ready`` checks, in order."""
    return [
        first_pass_done(plan, store, wave),
        *interlocks(plan, store, wave),
        delta_fits_window(plan, store, wave),
        rollback_possible(plan),
    ]


def rollback_possible(plan: Plan) -> Condition:
    """Whether a rollback after the switch could copy back what reached the target: a target type
    that can't be read yet (EWS, Graph) or a legacy that can't be written is said here, before the
    switch; the operator acknowledges it with the interlock."""
    reason = rollback_readiness(plan)
    if reason is not None:
        return Condition("rollback-copy-back", False, f"{reason}: acknowledge with --confirm W --reason TEXT")
    return Condition("rollback-copy-back", True, "a rollback can copy mail that reached the target back")


def interlocks(plan: Plan, store: StateStore, wave: str) -> list[Condition]:
    """What launching the final pass or switching needs the wave's name typed back for."""
    return [failures_decided(store, wave), blockers_resolved(plan, store, wave)]


def first_pass_done(plan: Plan, store: StateStore, wave: str) -> Condition:
    states = {r.source: r.state for r in store.mailbox_ledger_counts(wave)}
    never = [e.source for e in plan.wave(wave) if e.source not in states]
    unfinished = [
        f"{s} ({st})" for s, st in states.items() if st not in (MailboxState.OK, MailboxState.PARTIAL)
    ]
    if never or unfinished:
        parts = ([f"never copied: {_names(never)}"] if never else []) + (
            [f"not through a pass: {_names(unfinished)}"] if unfinished else []
        )
        return Condition("first-pass", False, "; ".join(parts))
    return Condition("first-pass", True, f"all {len(states)} mailbox(es) through a pass")


def failures_decided(store: StateStore, wave: str) -> Condition:
    """Every failed or skipped message copied on a retry or waived (``cutover skip``) with a reason."""
    open_ = [
        f"{r.source} ({r.failed} failed, {r.skipped} skipped)"
        for r in store.mailbox_ledger_counts(wave)
        if r.failed or r.skipped
    ]
    whole = [
        f"{r.source} ({r.error or 'failed'})"
        for r in store.mailbox_ledger_counts(wave)
        if r.state == MailboxState.FAILED
    ]
    if open_ or whole:
        hint = "retry them (cutover run --retry-failed) or decide with cutover skip --reason"
        return Condition("undecided-failures", False, f"{_names(open_ + whole)}: {hint}")
    return Condition("undecided-failures", True, "every failure is copied or waived")


def blockers_resolved(plan: Plan, store: StateStore, wave: str) -> Condition:
    """No unwaived readiness blocker (the checks' latest findings) on the wave's mailboxes or domains."""
    if store.last_check_run() is None:
        return Condition("readiness-blockers", False, "no readiness check has run: run cutover check")
    ours = wave_objects(plan.wave(wave))
    blockers = [f"{obj} ({check})" for _, obj, check in store.latest_blockers() if obj.lower() in ours]
    if blockers:
        return Condition(
            "readiness-blockers", False, f"unresolved: {_names(blockers)} (fix, or waive in [[waivers]])"
        )
    return Condition("readiness-blockers", True, "none unresolved for the wave's mailboxes and domains")


def delta_fits_window(plan: Plan, store: StateStore, wave: str) -> Condition:
    """The last delta pass, measured, took no longer than the window (``[window] hours``, else
    ``[capacity] window_hours``)."""
    hours = window_hours(plan)
    if hours is None:
        return Condition("delta-fits-window", False, "the plan gives no window length ([window] hours)")
    seconds = store.last_pass_seconds(wave, "delta")
    if seconds is None:
        return Condition(
            "delta-fits-window", False, "no delta pass measured yet: run the wave again (cutover run)"
        )
    verdict = "fits" if seconds <= hours * 3600 else "does not fit"
    return Condition("delta-fits-window", seconds <= hours * 3600,
                     f"last delta pass {seconds:.1f} s {verdict} the {hours:g} h window")  # fmt: skip


def window_hours(plan: Plan) -> float | None:
    return plan.window.hours or plan.readiness.capacity.window_hours


def wave_objects(entries: Sequence[MailboxEntry]) -> set[str]:
    """The names a finding can carry for one of these mailboxes: logins, addresses, domains."""
    names: set[str] = set()
    for e in entries:
        for value in (e.source, e.target, e.address):
            if value:
                names.add(value.lower())
                if "@" in value:
                    names.add(value.rpartition("@")[2].lower())
    return names


def failing(conditions: Sequence[Condition]) -> list[Condition]:
    return [c for c in conditions if not c.holds]


def _names(items: Sequence[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more

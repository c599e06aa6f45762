"""The rollback copy: what reached the target since the switch, copied back to the legacy by the same engine.

The rollback plan is the plan reversed: the target, read through the ``SINCE_SWITCH`` source
(only UIDs the target assigned after the switch), becomes the source; the legacy becomes the target;
folder renames are undone; the state directory is ``<state>/rollback``, so the two ledgers never mix.
``run_wave`` then copies as it always does: a second rollback pass copies nothing new, and nothing the
target held at the switch goes back, nor what the forward engine put there since (late mail: the
legacy has it; the forward ledger names those target UIDs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from runners.adapters import source_types, target_types
from runners.engine.wave import RunResult, run_wave
from runners.errors import MigrationError
from runners.plan.model import FolderRules, MailboxEntry, Plan
from runners.settle.since_switch import since_switch_endpoint
from runners.settle.switch_marks import engine_copies_path, marks_path, record_engine_copies, rollback_dir


def rollback_readiness(plan: Plan) -> str | None:
    """Why this plan's mail could not be copied back after a switch, or None when it can.

    Ask it BEFORE the switch: the target must be readable as a source (and its switch marks
    recordable: IMAP), and the legacy must be writable as a target.
    """
    if plan.target.type != "imap" or plan.target.type not in source_types():
        return (
            f"the target type {plan.target.type!r} can't be read as a source yet: after a rollback, routing "
            "would point back to the legacy but the mail that reached the target since the switch would stay "
            "there (only an IMAP target can be copied back today)"
        )
    if plan.source.type not in target_types():
        return (
            f"the legacy ({plan.source.type!r}) can't be written to as a target: mail that reached the target "
            "since the switch could not be copied back to it (only an IMAP legacy can receive it today)"
        )
    return None


def rollback_plan(plan: Plan, wave: str) -> Plan:
    """The plan reversed for ``wave``'s rollback copy (see the module docstring).

    Raises ``MigrationError`` when the plan can't be rolled back or the switch marks were never recorded.
    """
    reason = rollback_readiness(plan)
    if reason is not None:
        raise MigrationError(reason)
    marks = marks_path(plan, wave)
    if not marks.exists():
        raise MigrationError(
            f"no switch marks for wave {wave!r} ({marks}): without them the target's mail since the switch "
            "can't be told from what it held before"
        )
    return replace(
        plan,
        source=since_switch_endpoint(plan.target, str(marks), str(engine_copies_path(plan, wave))),
        target=plan.source,
        mailboxes=tuple(_reversed(e) for e in plan.mailboxes if e.wave == wave),
        folders=FolderRules(rename={new: old for old, new in plan.folders.rename.items()}),
        state_dir=rollback_dir(plan),
        switch=None,
    )


def _reversed(entry: MailboxEntry) -> MailboxEntry:
    return replace(
        entry,
        source=entry.target,
        target=entry.source,
        source_password=entry.target_password,
        target_password=entry.source_password,
    )


def copy_back(
    plan: Plan,
    wave: str,
    *,
    stop: threading.Event | None = None,
    on_start: Callable[[int], None] = lambda run_id: None,
) -> RunResult:
    """Copy what reached the target since the switch back to the legacy (one engine pass, rerunnable).

    ``on_start`` gets the run's id in the rollback's own store (``<state>/rollback/state.db``).
    Raises what ``run_wave`` raises (``WaveFault``), and ``MigrationError`` from ``rollback_plan``.
    """
    reversed_plan = rollback_plan(plan, wave)
    record_engine_copies(plan, wave)  # late mail the engine copied since the last rollback pass too
    return run_wave(reversed_plan, wave, stop=stop, on_start=on_start)

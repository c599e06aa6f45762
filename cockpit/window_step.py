"""The cockpit's side of the cutover window: which step comes next for a wave, what the operator must
answer before it (the interlock), and ``cutover switch`` started detached, as a launch starts
``cutover run --detach``: a migration step goes on when the cockpit closes or the SSH session drops.

The irreversible step, ``switch`` (the users move to the target), always asks for the wave's name
typed back and a reason, whether or not its conditions hold (mature tools make it explicit); the
other steps ask only when a condition doesn't hold. The answer goes to ``cutover switch`` as
``--confirm WAVE --reason TEXT``, which the step's record (the audit trail) keeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runners.plan.model import Plan
from runners.safe_text import file_name_part
from runners.state.private import private_file
from runners.state.store import StateStore
from runners.window.conditions import Condition, failing, interlocks, ready_conditions

#: The stage a wave is at → the ``cutover switch --step`` that moves it on (none after closed or a rollback).
NEXT_STEP = {
    "copying": "ready",
    "ready": "final-pass",
    "final-pass": "switch",
    "switched": "settle",
    "settled": "close",
}
#: Steps that always ask for the typed name and a reason.
ALWAYS_TYPED = frozenset({"switch"})


@dataclass(frozen=True, slots=True)
class StepPlan:
    wave: str
    step: str
    #: The conditions the step checks (listed in the dialog), and those that don't hold.
    conditions: tuple[Condition, ...]
    unmet: tuple[Condition, ...]

    @property
    def typed(self) -> bool:
        """Whether the operator must type the wave's name and give a reason."""
        return self.step in ALWAYS_TYPED or bool(self.unmet)


def next_step(stage: str) -> str | None:
    return NEXT_STEP.get(stage)


def plan_step(plan: Plan, store: StateStore, wave: str, step: str) -> StepPlan:
    """The step's conditions read now from the store (the driver checks them again when it runs)."""
    if step == "ready":
        conditions = ready_conditions(plan, store, wave)
    elif step in ("final-pass", "switch"):
        conditions = interlocks(plan, store, wave)
    else:
        conditions = []
    return StepPlan(wave, step, tuple(conditions), tuple(failing(conditions)))


def switch_argv(plan_path: Path, wave: str, step: str, *, reason: str | None = None) -> list[str]:
    """``cutover switch`` for one step; with a reason, the wave's name typed back goes with it."""
    argv = [sys.executable, "-m", "cockpit.cli", "switch", "--plan", str(plan_path), "--wave", wave]
    argv += ["--step", step, "--output", "json"]
    if reason is not None:
        argv += ["--confirm", wave, "--reason", reason]
    return argv


#: ``cutover switch``'s exit codes, in words (the cockpit says how a step it started ended).
ENDED = {0: "done", 1: "refused (a condition or an interlock; see its log)", 2: "could not run (see its log)"}


def start_detached(
    plan: Plan, wave: str, argv: list[str], *, kind: str = "switch"
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``argv`` in its own session (no terminal: a dropped SSH session can't stop it), its
    output in the state dir's logs (``KIND-WAVE-TIME.log``); returns the child (polled by the
    cockpit, so it never lingers as a zombie) and its log. ``cutover run --detach`` starts its
    runner here too."""
    log = plan.state_dir / "logs" / f"{kind}-{file_name_part(wave)}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    private_file(log)
    with open(log, "ab") as sink, open(os.devnull, "rb") as devnull:
        child = subprocess.Popen(
            argv, stdin=devnull, stdout=sink, stderr=sink, start_new_session=True, close_fds=True
        )
    return child, log

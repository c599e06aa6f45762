"""Where a wave stands in its window, read from the steps the store recorded (``wave_steps``).

The stage is the last main step done: ``copying`` before any, then ``ready``, ``final-pass``,
``switched`` (later ``settled``, ``closed``, or ``rolled-back``). Sub-steps of the switch
(``switch:…``) don't move the stage: they say where an interrupted switch resumes.
"""

from __future__ import annotations

from enum import StrEnum

from runners.state.store import StateStore


class Stage(StrEnum):
    COPYING = "copying"
    READY = "ready"
    FINAL_PASS = "final-pass"  # noqa: S105 (a step, not a password)
    SWITCHED = "switched"
    SETTLED = "settled"
    CLOSED = "closed"
    ROLLED_BACK = "rolled-back"


#: The order the window moves in (rolled back is a way out, not a step forward).
FORWARD = (Stage.COPYING, Stage.READY, Stage.FINAL_PASS, Stage.SWITCHED, Stage.SETTLED, Stage.CLOSED)
#: A wave at one of these serves its users from the target.
ON_TARGET = frozenset({Stage.SWITCHED, Stage.SETTLED, Stage.CLOSED})
#: Sub-steps of the switch, in order: the switch resumes after the last one done.
SWITCH_MARKS, SWITCH_DIRECTORY, SWITCH_DNS_UPDATE, SWITCH_DNS_CONFIRMED = (
    "switch:marks",
    "switch:directory",
    "switch:dns-update",
    "switch:dns-confirmed",
)


def stage_of(steps_done: list[str]) -> Stage:
    """The stage the recorded steps (oldest first) leave a wave at."""
    stage = Stage.COPYING
    for step in steps_done:
        if step in Stage.__members__.values():
            stage = Stage(step)
    return stage


def wave_stage(store: StateStore, wave: str) -> Stage:
    return stage_of(store.steps_done(wave))


def switch_substeps_done(steps_done: list[str]) -> set[str]:
    """The switch's sub-steps done since the wave's last final pass (an earlier switch, rolled back
    since, doesn't count)."""
    last_pass = max((i for i, s in enumerate(steps_done) if s == Stage.FINAL_PASS), default=-1)
    return {s for s in steps_done[last_pass + 1 :] if s.startswith("switch:")}

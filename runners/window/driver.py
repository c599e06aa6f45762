"""Run a wave forward through its window, from where it stands to a step, under the wave's lease.

Each step is recorded (started, then done, refused or failed) with its exact parameters, what it
checked and what it did. The interlocks: ``ready`` needs all its conditions, the final pass and the
switch need no undecided failure and no unresolved blocker, unless the operator types the wave's
name back (or forces) and gives a reason, which the step's record keeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runners.errors import MigrationError
from runners.plan.model import Plan
from runners.state.statuses import StepStatus
from runners.state.store import StateStore
from runners.state.wave_step_rows import Actor
from runners.window.close_step import write_report
from runners.window.conditions import Condition, failing, interlocks, ready_conditions
from runners.window.final_pass import final_pass
from runners.window.rollback_step import RollbackStep, rollback_substeps_done
from runners.window.settle_step import PostChecks, late_mail, post_check_conditions, run_probe
from runners.window.stages import FORWARD, ON_TARGET, Stage, switch_substeps_done, wave_stage
from runners.window.switch_step import SubSteps, SwitchStep

#: ``--step`` names and the stage each leads to (``rollback`` is a way out, not a step forward).
STEPS = {"ready": Stage.READY, "final-pass": Stage.FINAL_PASS, "switch": Stage.SWITCHED,
         "settle": Stage.SETTLED, "close": Stage.CLOSED}  # fmt: skip
ALL_STEPS = (*STEPS, "rollback")


@dataclass(frozen=True, slots=True)
class Override:
    """The operator's answer to an interlock: the wave's name typed back (or ``--force``) and a reason."""

    confirm: str | None = None
    reason: str | None = None
    force: bool = False

    def given(self) -> bool:
        return self.force or self.confirm is not None

    def params(self) -> dict[str, Any]:
        return {"confirm": self.confirm, "reason": self.reason, "force": self.force}


class Refused(MigrationError):
    """A step did not run or did not complete: an interlock, a condition or a server that didn't
    hold. ``problems`` lists each thing (exit 1)."""

    def __init__(self, step: str, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.step, self.problems = step, problems


@dataclass(slots=True)
class StepReport:
    step: str
    status: str
    checked: list[dict[str, Any]] = field(default_factory=list)
    did: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(slots=True)
class WindowResult:
    wave: str
    stage_before: Stage
    stage: Stage
    steps: list[StepReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"wave": self.wave, "stage_before": self.stage_before, "stage": self.stage,
                "steps": [vars_of(s) for s in self.steps]}  # fmt: skip


def vars_of(report: StepReport) -> dict[str, Any]:
    return {"step": report.step, "status": report.status, "checked": report.checked, "did": report.did,
            "seconds": round(report.seconds, 3)}  # fmt: skip


class WaveHeld(MigrationError):
    """Another operator's live lease holds the wave."""


class WindowDriver:
    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        wave: str,
        actor: Actor,
        override: Override,
        say: Callable[[str], None],
        post_checks: PostChecks | None = None,
    ) -> None:
        """``post_checks`` runs the post-phase readiness checks for settled (the command layer
        passes it: runners can't import checks)."""
        self.plan, self.store, self.wave, self.actor = plan, store, wave, actor
        self.override, self.say, self.post_checks = override, say, post_checks
        self.result = WindowResult(wave, wave_stage(store, wave), wave_stage(store, wave))

    def run_to(self, step: str) -> WindowResult:
        """Every step from where the wave stands up to ``step``, or the rollback (raises ``Refused``,
        ``WaveHeld``)."""
        self._check_override()
        self._take_lease()
        try:
            if step == "rollback":
                self._rollback()
                return self.result
            goal = STEPS[step]
            if self.result.stage not in FORWARD:
                raise Refused(
                    step, f"wave {self.wave} is {self.result.stage}: it doesn't move forward from there", []
                )
            while FORWARD.index(self.result.stage) < FORWARD.index(goal):
                nxt = FORWARD[FORWARD.index(self.result.stage) + 1]
                {Stage.READY: self._ready, Stage.FINAL_PASS: self._final_pass, Stage.SWITCHED: self._switch,
                 Stage.SETTLED: self._settle, Stage.CLOSED: self._close}[nxt]()  # fmt: skip
                self.result.stage = nxt
            if not self.result.steps:
                self.say(f"{self.wave}: already {self.result.stage}")
            return self.result
        finally:
            self.store.release_wave_lease(self.wave)

    # -- the steps ---------------------------------------------------------------------------------

    def _ready(self) -> None:
        self._gated(Stage.READY, ready_conditions(self.plan, self.store, self.wave), lambda: {})

    def _final_pass(self) -> None:
        def work() -> dict[str, Any]:
            done = final_pass(self.plan, self.store, self.wave, self.say, self.heartbeat)
            did = {"run": done.run_id, "status": done.status, "seconds": round(done.seconds, 3),
                   "expected_seconds": done.expected_seconds, "copied": done.copied, "failed": done.failed}  # fmt: skip
            self.say(f"final pass: run {done.run_id} {done.status} in {done.seconds:.1f} s "
                     f"(the users' downtime), {done.copied} copied, {done.failed} failed")  # fmt: skip
            if done.status not in ("ok", "partial"):
                raise _StepFailed(did, [f"the final pass ended {done.status} (run {done.run_id})"])
            return did

        self._gated(Stage.FINAL_PASS, interlocks(self.plan, self.store, self.wave), work)

    def _switch(self) -> None:
        done_before = switch_substeps_done(self.store.steps_done(self.wave))
        work = self._substeps(SwitchStep, "switch", done_before)
        self._gated(Stage.SWITCHED, interlocks(self.plan, self.store, self.wave), work)

    def _settle(self) -> None:
        probe: dict[str, Any] = {}

        def conditions() -> list[Condition]:
            checks = post_check_conditions(self.plan, self.wave, self.post_checks)
            self.heartbeat()
            probed, record = run_probe(self.plan, self.wave)
            probe.update(record)
            return [*checks, probed]

        def work() -> dict[str, Any]:
            return {"probe": probe, **late_mail(self.plan, self.wave, self.say, self.heartbeat)}

        self._gated(Stage.SETTLED, conditions, work)

    def _close(self) -> None:
        def work() -> dict[str, Any]:
            written = write_report(self.plan, self.store, self.wave)
            files = written["report_files"]
            self.say(f"report: {files['markdown']}")
            self.say(f"report: {files['json']}")
            return written

        self._gated(Stage.CLOSED, [], work)

    def _rollback(self) -> None:
        if self.result.stage == Stage.ROLLED_BACK:
            self.say(f"{self.wave}: already rolled-back")
            return
        done = self.store.steps_done(self.wave)
        started_switch = bool(switch_substeps_done(done))
        if self.result.stage not in ON_TARGET and not (
            self.result.stage == Stage.FINAL_PASS and started_switch
        ):
            raise Refused(
                "rollback", f"wave {self.wave} is {self.result.stage}: there is no switch to roll back", []
            )
        work = self._substeps(RollbackStep, "rollback", rollback_substeps_done(done))
        self._gated(Stage.ROLLED_BACK, [], work)
        self.result.stage = Stage.ROLLED_BACK

    def _substeps(
        self, kind: type[SubSteps], name: str, done_before: set[str]
    ) -> Callable[[], dict[str, Any]]:
        """The work of a step made of recorded sub-steps, resuming after those already done."""

        def work() -> dict[str, Any]:
            step = kind(self.plan, self.store, self.wave, self.actor, self.say, self.heartbeat, done_before)
            outcome = step.run()
            if not outcome.done:
                raise _StepFailed(outcome.did, outcome.problems)
            return outcome.did

        if done_before:
            self.say(f"{name}: resuming after {', '.join(sorted(done_before))}")
        return work

    def _gated(
        self,
        stage: Stage,
        conditions: list[Condition] | Callable[[], list[Condition]],
        work: Callable[[], dict[str, Any]],
    ) -> None:
        """Record the step: refused when a condition fails without the operator's override, else do
        ``work`` and record what it did. ``conditions`` may be a callable: checked once the step's
        row exists (a check that takes time, like the probe, counts in the step's timing)."""
        step_id = self.store.begin_step(
            self.wave, stage, self.actor, self.override.params() if self.override.given() else {}
        )
        try:
            conditions = conditions() if callable(conditions) else conditions
        except BaseException as exc:
            self.store.end_step(step_id, StepStatus.FAILED, did={"error": str(exc)})
            raise
        checked = [c.as_dict() for c in conditions]
        unmet = failing(conditions)
        # The operator's answer is kept whenever given; "overridden" says whether it was needed.
        params = {**self.override.params(), "overridden": bool(unmet)} if self.override.given() else {}
        self.store.set_step_params(step_id, params)
        report = StepReport(stage, StepStatus.STARTED, checked)
        self.result.steps.append(report)
        for c in conditions:
            self.say(f"{stage}: {c}")
        if unmet and not self.override.given():
            report.status = StepStatus.REFUSED
            self.store.end_step(step_id, StepStatus.REFUSED, checked=checked)
            raise Refused(stage, f"{stage} refused for wave {self.wave}: {len(unmet)} condition(s) don't hold; "
                          f"to go on anyway type the wave's name back: --confirm {self.wave} --reason TEXT",
                          [str(c) for c in unmet])  # fmt: skip
        if unmet:
            self.say(f"{stage}: going on as {self.actor} decided: {self.override.reason}")
        started = time.monotonic()
        try:
            report.did = work()
        except _StepFailed as failed:
            report.status, report.did = StepStatus.FAILED, failed.did
            report.seconds = time.monotonic() - started
            self.store.end_step(
                step_id, StepStatus.FAILED, checked=checked, did={**failed.did, "problems": failed.problems}
            )
            raise Refused(stage, f"{stage} of wave {self.wave} did not complete", failed.problems) from None
        except BaseException as exc:
            self.store.end_step(step_id, StepStatus.FAILED, checked=checked, did={"error": str(exc)})
            raise
        report.seconds = time.monotonic() - started
        report.did["seconds"] = round(report.seconds, 3)
        report.status = StepStatus.DONE
        self.store.end_step(step_id, StepStatus.DONE, checked=checked, did=report.did)
        self.say(f"{stage}: done in {report.seconds:.1f} s")

    # -- the override and the lease ------------------------------------------------------------------

    def _check_override(self) -> None:
        o = self.override
        if o.confirm is not None and o.confirm != self.wave:
            raise Refused(
                "interlock", f"the name typed back ({o.confirm!r}) is not the wave's ({self.wave!r})", []
            )
        if o.given() and not (o.reason or "").strip():
            raise Refused(
                "interlock", "--confirm and --force need a --reason (it is kept in the audit trail)", []
            )

    def _take_lease(self) -> None:
        holder = self.store.take_wave_lease(
            self.wave, f"{self.actor.user}@{self.actor.host}", self.plan.window.lease_seconds
        )
        if holder is not None:
            until = time.strftime("%H:%M:%S", time.localtime(holder.expires))
            raise WaveHeld(f"wave {self.wave} is being moved by {holder.holder} (pid {holder.pid} on {holder.host}) "
                           f"until {until} unless renewed: wait for it, or for its lease to lapse")  # fmt: skip

    def heartbeat(self) -> None:
        """Renew the lease (a long final pass or DNS wait must not let another operator in)."""
        self.store.take_wave_lease(
            self.wave, f"{self.actor.user}@{self.actor.host}", self.plan.window.lease_seconds
        )


class _StepFailed(Exception):
    def __init__(self, did: dict[str, Any], problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.did, self.problems = did, problems

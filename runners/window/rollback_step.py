"""The rollback of one switched wave: routing back to the legacy, DNS back to what it served before
the switch (confirmed on every authoritative server), then the mail that reached the target since
the switch copied back to the legacy. Each sub-step is recorded when it completes
(``rollback:directory``, ``rollback:dns-update``, ``rollback:dns-confirmed``, ``rollback:copy-back``);
a rerun skips those done since the switch, and the DNS update reads the primary before sending, so
nothing is sent twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runners.engine import faults
from runners.settle.rollback import copy_back, rollback_readiness
from runners.state.statuses import StepStatus
from runners.switch.directory import route_users
from runners.switch.dns_confirm import confirm, servers_by_zone
from runners.switch.dns_update import Primary
from runners.window.rollback_dns import manual_restore, recorded_changes, restore_plan, send_restore
from runners.window.stages import Stage
from runners.window.switch_step import SubSteps, SwitchOutcome, user_address

ROLLBACK_DIRECTORY, ROLLBACK_DNS_UPDATE, ROLLBACK_DNS_CONFIRMED, ROLLBACK_COPY_BACK = (
    "rollback:directory",
    "rollback:dns-update",
    "rollback:dns-confirmed",
    "rollback:copy-back",
)
#: At most this many copy-back passes: each copies only what is new since the last one.
COPY_BACK_PASSES = 5


def rollback_substeps_done(steps_done: list[str]) -> set[str]:
    """The rollback's sub-steps done since the wave was last switched."""
    last_switch = max((i for i, s in enumerate(steps_done) if s == Stage.SWITCHED), default=-1)
    return {s for s in steps_done[last_switch + 1 :] if s.startswith("rollback:")}


class RollbackStep(SubSteps):
    """The rollback's sub-steps for one wave (routing back, DNS restored, mail copied back)."""

    def run(self) -> SwitchOutcome:
        outcome = SwitchOutcome(True)
        for part in (self._directory, self._dns, self._copy_back):
            part(outcome)
            if not outcome.done:
                break
        return outcome

    def _substep(
        self, name: str, params: dict[str, Any], work: Callable[[], tuple[bool, dict[str, Any]]]
    ) -> dict[str, Any] | None:
        """Run a sub-step unless it is done since the switch; record it. None when skipped."""
        if name in self.done_before:
            self.say(f"{name}: done before this run (resumed)")
            return None
        row = self.store.begin_step(self.wave, name, self.actor, params)
        try:
            ok, did = work()
        except Exception as exc:
            self.store.end_step(row, StepStatus.FAILED, did={"error": str(exc)})
            raise
        self.store.end_step(row, StepStatus.DONE if ok else StepStatus.FAILED, did=did)
        return did

    # -- routing -----------------------------------------------------------------------------------

    def _directory(self, outcome: SwitchOutcome) -> None:
        settings = self.plan.switch.directory if self.plan.switch else None
        if settings is None:
            outcome.did["directory"] = "no [switch.directory] in the plan: nothing routed there"
            return
        addresses = [user_address(e) for e in self.plan.wave(self.wave)]

        def work() -> tuple[bool, dict[str, Any]]:
            result = route_users(settings, addresses, "legacy")
            if not result.confirmed:
                outcome.done = False
                outcome.problems += result.problems()
            else:
                self.say(
                    f"directory: {result.attribute}={result.value} for {len(result.users)} user(s), read back"
                )
            return result.confirmed, result.as_did()

        did = self._substep(ROLLBACK_DIRECTORY, {"attribute": settings.attribute, "value": settings.legacy_value,
                                                 "users": addresses}, work)  # fmt: skip
        outcome.did["directory"] = did if did is not None else "done before this run (resumed)"

    # -- DNS ---------------------------------------------------------------------------------------

    def _dns(self, outcome: SwitchOutcome) -> None:
        settings = self.plan.switch.dns if self.plan.switch else None
        changes = recorded_changes(self.store, self.wave)
        if settings is None or not changes:
            outcome.did["dns"] = "the switch changed no DNS record: nothing to restore"
            return
        plan = restore_plan(settings, changes)
        outcome.did["dns"] = {"restore": [r.label for r in plan.restore], "not_restored": plan.problems}
        for problem in plan.problems:
            self.say(problem)
        primary = Primary.from_plan(settings)

        def update() -> tuple[bool, dict[str, Any]]:
            if primary is None:
                text = manual_restore(plan.restore)
                self.say("dns: no primary and key in the plan: put these records back, the rollback waits for them\n"
                         + text)  # fmt: skip
                return True, {"manual": True, "instructions": text}
            did = send_restore(primary, plan.restore, changes)
            faults.reached("rollback-dns-sent")
            for other in did["changed_since_switch"]:
                self.say(
                    f"dns: {other['label']} was changed since the switch (serves {', '.join(other['serves'])}): left alone"
                )
            self.say(
                f"dns: restored {', '.join(did['sent']) or 'nothing (already back)'} on {did['primary']}"
            )
            return True, did

        params = {
            "changes": [{"label": c.label, "from": list(c.after), "to": list(c.before)} for c in changes]
        }
        did = self._substep(ROLLBACK_DNS_UPDATE, params, update)
        outcome.did["dns"]["update"] = did if did is not None else "done before this run (resumed)"
        if did is not None and did.get("changed_since_switch"):
            outcome.problems += [
                f"dns: {o['label']} changed since the switch: left alone" for o in did["changed_since_switch"]
            ]
        if not plan.restore:
            return
        assert self.plan.switch is not None
        servers = servers_by_zone(plan.restore, settings.nameservers)
        timeout, interval = self.plan.switch.confirm_timeout, self.plan.switch.confirm_interval

        def confirmed() -> tuple[bool, dict[str, Any]]:
            def progress(state: Any) -> None:
                self.heartbeat()
                self.say("dns: " + state.summary())

            result = confirm(plan.restore, servers, timeout=timeout, interval=interval, progress=progress)
            self.say("dns: " + result.summary())
            if not result.confirmed:
                outcome.done = False
                outcome.problems += [f"dns: not confirmed after {result.elapsed:.0f} s"] + [
                    s.describe() for s in result.lagging
                ]
            return result.confirmed, {"confirmed": result.confirmed, "elapsed": round(result.elapsed, 3),
                                      "servers": [s.describe() for s in result.servers]}  # fmt: skip

        did = self._substep(ROLLBACK_DNS_CONFIRMED, {"servers": [str(s) for z in servers.values() for s in z],
                                                     "timeout": timeout}, confirmed)  # fmt: skip
        outcome.did["dns"]["confirmation"] = did if did is not None else "done before this run (resumed)"

    # -- the mail since the switch -----------------------------------------------------------------

    def _copy_back(self, outcome: SwitchOutcome) -> None:
        reason = rollback_readiness(self.plan)
        if reason is not None:
            outcome.did["copy_back"] = f"not copied back: {reason}"
            self.say(f"copy back: {reason}")
            return

        def work() -> tuple[bool, dict[str, Any]]:
            passes: list[dict[str, Any]] = []
            for _ in range(COPY_BACK_PASSES):
                self.heartbeat()
                result = copy_back(self.plan, self.wave)
                copied = int(result.stats.totals().get("copied", 0))
                passes.append({"run": result.run_id, "status": result.status, "copied": copied,
                               "seconds": round(result.seconds, 3)})  # fmt: skip
                self.say(
                    f"copy back: pass {result.run_id} {result.status}, {copied} message(s) to the legacy"
                )
                if result.status not in ("ok", "partial"):
                    outcome.done = False
                    outcome.problems.append(
                        f"copy back: the pass ended {result.status} (rollback run {result.run_id})"
                    )
                    break
                if copied == 0:
                    break
            return outcome.done, {"passes": passes, "copied": sum(p["copied"] for p in passes)}

        did = self._substep(ROLLBACK_COPY_BACK, {"passes_at_most": COPY_BACK_PASSES}, work)
        outcome.did["copy_back"] = did if did is not None else "done before this run (resumed)"

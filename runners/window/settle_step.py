"""The settled step's checks and work: the post-phase readiness checks (given by the command layer,
since runners can't import checks), the mail-flow probe through the new MX, then the late-mail loop.

The checks and the probe are conditions: a blocker or a probe that didn't arrive refuses the step
unless the operator overrides it. The late-mail loop is the step's work; its count is
``did["late_messages"]`` (the cockpit reads that key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runners.plan.model import Plan
from runners.plan.switch_model import HostPort
from runners.settle.late_mail import LateMailResult, LatePass, catch_late_mail
from runners.settle.probe import ProbeResult, probe_mail_flow
from runners.window.conditions import Condition

#: What the command layer passes in: the post-phase checks' verdict for the wave, as conditions.
PostChecks = Callable[[Plan, str], list[Condition]]


def post_check_conditions(plan: Plan, wave: str, post_checks: PostChecks | None) -> list[Condition]:
    if not plan.window.post_checks:
        return [Condition("post-checks", True, "not run: [window] post_checks = false")]
    if post_checks is None:
        return [Condition("post-checks", False, "no post-phase checks runner was given to the window")]
    return post_checks(plan, wave)


def probe_mx(plan: Plan, wave: str) -> HostPort | None:
    """``[window] probe_mx``, else the most preferred MX the switch sets for a domain of the wave."""
    if plan.window.probe_mx is not None:
        return plan.window.probe_mx
    domains = {(e.address or e.target).rpartition("@")[2].lower() for e in plan.wave(wave)}
    dns = plan.switch.dns if plan.switch else None
    for domain in dns.domains if dns else ():
        if domain.domain in domains and domain.mx:
            best = min(domain.mx, key=lambda mx: mx.preference)
            return HostPort(best.host.rstrip("."), 25)
    return None


def run_probe(plan: Plan, wave: str) -> tuple[Condition, dict[str, Any]]:
    """Send the probe; the condition holds when it arrived. Returns it and the probe's record."""
    mx = probe_mx(plan, wave)
    if mx is None:
        detail = "no MX to probe: set [window] probe_mx or the domain's [switch.dns.domains] mx"
        return Condition("mail-flow-probe", False, detail), {"outcome": "not sent", "reason": detail}
    result = probe_mail_flow(plan, wave, mx_host=mx.host, mx_port=mx.port,
                             deadline_seconds=plan.window.probe_deadline_seconds,
                             poll_seconds=plan.window.probe_poll_seconds)  # fmt: skip
    record = probe_record(result)
    arrived = result.outcome == "arrived"
    detail = (f"arrived in {result.canary}'s INBOX through {result.mx} after {result.delay:.2f} s"
              if arrived and result.delay is not None else
              f"{result.outcome} through {result.mx} to {result.canary}"
              + (f": {result.refusal}" if result.refusal else f" ({result.seen})" if result.seen else ""))  # fmt: skip
    return Condition("mail-flow-probe", arrived, detail), record


def probe_record(result: ProbeResult) -> dict[str, Any]:
    return {"outcome": result.outcome, "token": result.token, "canary": result.canary, "mx": result.mx,
            "delay": None if result.delay is None else round(result.delay, 3), "refusal": result.refusal,
            "seen": result.seen, "removed": result.removed, "left": result.left, "smtp": result.smtp}  # fmt: skip


def late_mail(
    plan: Plan, wave: str, say: Callable[[str], None], heartbeat: Callable[[], None]
) -> dict[str, Any]:
    """The late-mail loop; its passes and total, as the step's record keeps them."""

    def on_pass(late: LatePass, so_far: LateMailResult) -> None:
        heartbeat()
        say(f"late mail: pass run {late.run_id} {late.status} in {late.seconds:.1f} s caught {late.caught} "
            f"({so_far.caught} so far)")  # fmt: skip

    result = catch_late_mail(plan, wave, quiet_seconds=plan.window.late_mail_quiet_minutes * 60,
                             pass_interval_seconds=plan.window.late_mail_interval_seconds, on_pass=on_pass)  # fmt: skip
    passes = [{"run": p.run_id, "caught": p.caught, "status": p.status, "seconds": round(p.seconds, 3)}
              for p in result.passes]  # fmt: skip
    say(f"late mail: {result.outcome} after {len(passes)} pass(es), {result.caught} late message(s) caught")
    return {"late_messages": result.caught, "late_passes": passes, "late_outcome": result.outcome}

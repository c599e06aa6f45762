"""The demo scenario on a running lab: write the plan, run readiness, run the pilot wave, verify.

Everything goes through the real engine and checks over TCP (``checks.runner.run_checks``,
``runners.engine.wave.run_wave``, ``runners.verify.verify_wave``); the lab only provides servers.
The plan is an ordinary plan file in the state directory, so ``cutover status --plan`` works on
it afterwards (and ``cutover check``/``run``/``verify`` too, while a lab is up on those ports).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.history import Changes
from checks.runner import CheckRun, run_checks, select
from cockpit.commands.check import record_run
from cockpit.commands.run import log_to
from lab.embedded import Lab
from lab.plan import PILOT, write_plan
from runners.engine.wave import RunResult, run_wave
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state.read_models.status import status_data
from runners.verify import VerifyReport, verify_wave


@dataclass(slots=True)
class DemoResult:
    lab: Lab
    plan: Plan
    readiness: CheckRun
    readiness_run_id: int
    readiness_changes: Changes
    pilot: RunResult
    verify: VerifyReport
    #: ``cutover status --wave pilot --failures`` as data: the drill-down into every failure.
    status: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def run_scenario(lab: Lab, state_dir: Path, say: Callable[[str], None] = lambda line: None) -> DemoResult:
    """Readiness, the pilot wave and its verification, as an operator would run them."""
    plan = load_plan(write_plan(lab, state_dir))
    log = log_to(plan.state_dir / "logs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.log")
    try:
        return _run(lab, plan, say)
    finally:
        logging.getLogger("cutover").removeHandler(log)
        log.close()


def _run(lab: Lab, plan: Plan, say: Callable[[str], None]) -> DemoResult:
    seconds: dict[str, float] = {}

    say(f"readiness: {len(select())} checks over {len(plan.mailboxes)} mailboxes")
    began = time.monotonic()
    readiness = run_checks(plan, select(), phase="pre")
    run_id, changes = record_run(plan, readiness)
    seconds["readiness"] = time.monotonic() - began

    say(f"pilot wave: {len(plan.wave(PILOT))} mailboxes")
    began = time.monotonic()
    pilot = run_wave(plan, PILOT)
    seconds["pilot"] = time.monotonic() - began

    say("verify --deep: the pilot, message by message")
    began = time.monotonic()
    report = verify_wave(plan, PILOT, deep=True)
    seconds["verify"] = time.monotonic() - began

    status = status_data(plan, wave=PILOT, failures=True)
    return DemoResult(lab, plan, readiness, run_id, changes, pilot, report, status, seconds)

"""The window's record in the state store, its plan section and its commands' shapes: what needs no
mail server (the real-server paths are in test_window_switch.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dovecot_lab import CUTOVER, Unreachable, write_plan
from servers.process import free_ports

from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.state.statuses import ControlAction, StepStatus
from runners.state.store import StateStore
from runners.state.wave_step_rows import Actor
from runners.window.actor import current_actor, ssh_client
from runners.window.stages import Stage, stage_of, switch_substeps_done

OPERATOR = Actor("ops", "jump1", "192.0.2.9 52100")


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    side = Unreachable(free_ports(1)[0])
    return write_plan(tmp_path, side, side, mailboxes=(("alice", "alice", "pilot"), ("bob", "bob", "later")),
                      tail="[window]\nhours = 2\n")  # fmt: skip


def cutover(plan: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SRC_MASTER_PW": "x", "DST_MASTER_PW": "y"}
    return subprocess.run([*CUTOVER, *args, "--plan", str(plan)], capture_output=True, text=True, env=env,
                          cwd=plan.parent, timeout=60)  # fmt: skip


def store_of(plan: Path) -> StateStore:
    return StateStore(load_plan(plan).state_db)


def test_the_ssh_client_comes_from_ssh_connection_or_ssh_client() -> None:
    assert ssh_client({"SSH_CONNECTION": "192.0.2.9 52100 192.0.2.1 22"}) == "192.0.2.9 52100"
    assert ssh_client({"SSH_CLIENT": "2001:db8::9 52100 22"}) == "2001:db8::9 52100"
    assert ssh_client({}) is None
    me = current_actor({"SSH_CONNECTION": "192.0.2.9 52100 192.0.2.1 22"})
    assert me.ssh_client == "192.0.2.9 52100" and str(me).endswith("(ssh from 192.0.2.9 52100)")


def test_the_stage_is_the_last_main_step_done_and_a_new_final_pass_restarts_the_switch() -> None:
    assert stage_of([]) == Stage.COPYING
    steps = ["ready", "final-pass", "switch:directory", "switch:dns-update"]
    assert stage_of(steps) == Stage.FINAL_PASS  # sub-steps don't move it
    assert switch_substeps_done(steps) == {"switch:directory", "switch:dns-update"}
    assert switch_substeps_done([*steps, "final-pass"]) == set()


def test_steps_keep_who_when_parameters_and_outcome(plan: Path) -> None:
    store = store_of(plan)
    step = store.begin_step("pilot", "ready", OPERATOR, {"confirm": "pilot", "reason": "ok by the customer"})
    store.end_step(step, StepStatus.DONE, checked=[{"name": "first-pass", "holds": True}], did={"n": 1})

    (row,) = store.wave_steps("pilot")
    assert (row.step, row.status, row.actor, row.params["reason"]) == (
        "ready",
        "done",
        OPERATOR,
        "ok by the customer",
    )
    assert row.checked == [{"name": "first-pass", "holds": True}] and row.ended is not None
    (pilot, later) = store.wave_standings(["pilot", "later"])
    assert (pilot.stage, pilot.by, later.stage) == (
        "ready",
        "ops@jump1 (ssh from 192.0.2.9 52100)",
        "copying",
    )
    assert not store.wave_switched("pilot")


def test_a_live_lease_refuses_and_a_dead_holders_lease_is_taken_over(plan: Path) -> None:
    store = store_of(plan)
    # Another process takes the lease and dies without giving it back (kill -9, an SSH drop).
    code = (
        "import sys; from runners.state.store import StateStore; "
        f"assert StateStore({str(load_plan(plan).state_db)!r}).take_wave_lease('pilot', 'other@desk', 600) is None"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    dead = store.wave_lease("pilot")
    assert dead is not None and dead.holder == "other@desk"

    assert store.take_wave_lease("pilot", "me@here", 600) is None  # its pid is gone: taken over
    mine = store.wave_lease("pilot")
    assert mine is not None and mine.holder == "me@here"
    # While this (live) process holds it, another is refused with who holds it.
    child = subprocess.run(
        [sys.executable, "-c", code.replace("assert ", "print(").replace(" is None", ".holder)")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.stdout.strip() == "me@here"


def test_audit_lists_every_operator_action_with_who_and_parameters(plan: Path) -> None:
    store = store_of(plan)
    store.request_control(ControlAction.PAUSE, wave="pilot", mailbox=None, requested_by="ops")
    store.record_operator_action("ops@jump1", "launch of wave pilot")
    step = store.begin_step("pilot", "final-pass", OPERATOR, {"force": True, "reason": "customer said go"})
    store.end_step(step, StepStatus.DONE, did={"seconds": 12.5})
    store.begin_step("later", "ready", OPERATOR, {})

    proc = cutover(plan, "audit", "--wave", "pilot", "--output", "json")

    assert proc.returncode == 0, proc.stderr
    actions: list[dict[str, Any]] = json.loads(proc.stdout)["actions"]
    assert [(a["action"], a["who"]) for a in actions] == [
        ("pause", "ops"), ("launch", "ops@jump1"), ("final-pass", "ops@jump1 (ssh from 192.0.2.9 52100)")
    ]  # fmt: skip
    assert set(actions[0]) == {"at", "who", "action", "wave", "mailbox", "detail", "params"}
    assert actions[2]["params"] == {"force": True, "reason": "customer said go"}
    assert actions[2]["detail"] == "done (reason: customer said go)"
    text = cutover(plan, "audit")
    assert text.returncode == 0 and "customer said go" in text.stdout and "later" in text.stdout


def test_a_run_names_who_launched_it_in_the_audit(plan: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.7 40022 192.0.2.1 22")
    store_of(plan).start_run("pilot", "full", 2)  # what `cutover run` records when it starts a pass

    proc = cutover(plan, "audit", "--wave", "pilot", "--output", "json")

    launch = next(a for a in json.loads(proc.stdout)["actions"] if a["action"] == "launch")
    assert launch["who"].endswith("(ssh from 198.51.100.7 40022)") and "@" in launch["who"]
    assert launch["params"]["kind"] == "full"


def test_a_rollback_before_the_switch_refuses_and_changes_nothing(plan: Path) -> None:
    proc = cutover(plan, "switch", "--wave", "pilot", "--step", "rollback", "--output", "json")
    assert proc.returncode == 1
    assert "there is no switch to roll back" in json.loads(proc.stdout)["refused"]
    assert store_of(plan).wave_steps() == []


def test_switch_refuses_an_unknown_wave_and_a_ready_that_doesnt_hold(plan: Path) -> None:
    unknown = cutover(plan, "switch", "--wave", "nope")
    assert unknown.returncode == 2 and "not in the plan" in unknown.stderr

    proc = cutover(plan, "switch", "--wave", "pilot", "--output", "json")

    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert set(data) == {"wave", "stage_before", "stage", "steps", "refused", "problems"}
    assert (data["stage"], data["steps"][0]["step"], data["steps"][0]["status"]) == (
        "copying",
        "ready",
        "refused",
    )
    assert [c["name"] for c in data["steps"][0]["checked"] if not c["holds"]] == [
        "first-pass", "readiness-blockers", "delta-fits-window"
    ]  # fmt: skip
    assert any("never copied: alice" in p for p in data["problems"])
    status = json.loads(cutover(plan, "status", "--output", "json").stdout)
    assert [(w["wave"], w["stage"], w["last_problem"]) for w in status["window"]] == [
        ("pilot", "copying", "ready: refused"), ("later", "copying", None)
    ]  # fmt: skip


def test_a_switched_wave_never_starts_afresh(plan: Path) -> None:
    store = store_of(plan)
    store.end_step(store.begin_step("pilot", "switched", OPERATOR, {}), StepStatus.DONE)
    assert store.wave_switched("pilot")

    proc = cutover(plan, "run", "--wave", "pilot", "--output", "json")

    assert proc.returncode == 2
    assert "is switched: its runs are delta passes only" in proc.stdout


def test_help_of_switch_and_audit() -> None:
    switch = subprocess.run([*CUTOVER, "switch", "--help"], capture_output=True, text=True, timeout=60)
    assert switch.returncode == 0
    for option in ("--wave", "--step", "--confirm", "--reason", "--force", "--output", "Exit 0"):
        assert option in switch.stdout
    audit = subprocess.run([*CUTOVER, "audit", "--help"], capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0 and "--wave" in audit.stdout and "who" in audit.stdout


def test_the_window_section_of_the_plan(tmp_path: Path) -> None:
    side = Unreachable(free_ports(1)[0])
    plan = load_plan(
        write_plan(tmp_path, side, side, tail='[window]\nstart = "2026-12-06T22:00:00+01:00"\nhours = 3\n')
    )
    assert plan.window.hours == 3 and plan.window.start is not None and plan.window.start.hour == 22
    assert plan.window.lease_seconds == 300
    bad = write_plan(tmp_path / "bad", side, side, tail='[window]\nstart = "2026-12-06 22:00"\n')
    with pytest.raises(PlanError, match=r"plan.toml:\d+: \[window.start\] .*no UTC offset"):
        load_plan(bad)
    typo = write_plan(tmp_path / "typo", side, side, tail="[window]\nhour = 3\n")
    with pytest.raises(PlanError, match='did you mean "hours"'):
        load_plan(typo)

"""The readiness runner, history, waivers and output formats, plus the CLI's exit codes."""

from __future__ import annotations

import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from dovecot_lab import make_lab
from servers.dovecot import DovecotServer

from checks.catalog import all_checks
from checks.context import CheckContext
from checks.history import record
from checks.model import Finding, Severity, State
from checks.registry import CheckSpec, SkipCheck, check
from checks.render import render_junit, render_markdown, render_table, run_data
from checks.runner import run_checks
from checks.waivers import apply_waivers
from runners.errors import CommandError
from runners.plan.loader import load_plan
from runners.plan.readiness_parts import Waiver
from runners.state.store import StateStore


def spec(check_id: str, body: object, category: str = "dns", phase: str = "any") -> CheckSpec:
    return CheckSpec(check_id, f"title of {check_id}", category, body, phase)  # type: ignore[arg-type]


def finding(check_id: str, severity: Severity, obj: str = "example.test") -> Finding:
    return Finding(check_id, severity, "domain", obj, f"{check_id} says {severity}", observed="seen")


@pytest.fixture
def plan_path(tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer) -> Path:
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    lab.plan.write_text(lab.plan.read_text() + "\n[checks]\ntimeout = 1.5\n")
    return lab.plan


def test_runner_states_errors_skips_and_deadlines(plan_path: Path) -> None:
    def fine(ctx: CheckContext) -> Iterator[Finding]:
        yield finding("T-OK", Severity.PASS)

    def refused(ctx: CheckContext) -> Iterator[Finding]:
        raise CommandError("dns://127.0.0.1:53", "query MX", "REFUSED")

    def not_here(ctx: CheckContext) -> Iterator[Finding]:
        raise SkipCheck("no [dns] section")

    def hangs(ctx: CheckContext) -> Iterator[Finding]:
        time.sleep(30)
        yield finding("T-HANG", Severity.PASS)

    started = time.monotonic()
    run = run_checks(
        load_plan(plan_path),
        [
            spec("T-OK", fine),
            spec("T-ERR", refused),
            spec("T-SKIP", not_here),
            spec("T-HANG", hangs),
            spec("T-POST", fine, phase="post"),
        ],
    )
    states = {o.check_id: (o.state, o.reason) for o in run.outcomes}

    # The hung check was abandoned at its 2 s deadline, not waited for (it sleeps 30 s): a bound far
    # from both, so a loaded machine's slowness can't fail it.
    assert time.monotonic() - started < 25
    assert states["T-OK"] == (State.OK, "")
    assert states["T-ERR"][0] == State.ERROR and "REFUSED" in states["T-ERR"][1]
    assert states["T-SKIP"] == (State.SKIPPED, "no [dns] section")
    assert states["T-HANG"] == (State.ERROR, "timed out after 2 s")
    assert states["T-POST"][0] == State.SKIPPED
    assert run.incomplete


def test_waivers_hide_a_finding_until_they_expire(plan_path: Path) -> None:
    def blocker(ctx: CheckContext) -> Iterator[Finding]:
        yield finding("T-BLK", Severity.BLOCKER)

    run = run_checks(load_plan(plan_path), [spec("T-BLK", blocker)])
    assert run.blockers
    today = date(2026, 11, 29)
    apply_waivers(run.outcomes, [Waiver("T-BLK", "*", "accepted for the pilot", today, "j.doe")], today=today)
    assert not run.blockers and "waived by j.doe until 2026-11-29" in (run.findings[0].waiver or "")
    rerun = run_checks(load_plan(plan_path), [spec("T-BLK", blocker)])
    apply_waivers(rerun.outcomes, [Waiver("T-BLK", "*", "too late", today - timedelta(days=1))], today=today)
    assert rerun.blockers  # expired: counts again


def test_history_marks_new_persisting_regressed_and_resolved(plan_path: Path) -> None:
    plan = load_plan(plan_path)
    first: list[Finding] = [
        finding("T-A", Severity.WARNING, "a.test"),
        finding("T-A", Severity.WARNING, "b.test"),
    ]
    second: list[Finding] = [
        finding("T-A", Severity.BLOCKER, "a.test"),
        finding("T-A", Severity.WARNING, "c.test"),
    ]
    batches = iter([first, second])

    def changing(ctx: CheckContext) -> Iterator[Finding]:
        yield from next(batches)

    store = StateStore(plan.state_db)
    record(store, run_checks(plan, [spec("T-A", changing)]), "all")
    run_id, changes = record(store, run_checks(plan, [spec("T-A", changing)]), "all")

    data = run_data(run_checks(plan, []), run_id, changes)  # just to exercise rendering of empty runs
    assert data["findings"] == []
    assert {f.object_id for f in second if f.fingerprint in changes.regressed} == {"a.test"}
    assert {f.object_id for f in second if f.fingerprint in changes.new} == {"c.test"}
    assert [r["object_id"] for r in changes.resolved] == ["b.test"]


def test_outputs_are_rendered_from_the_same_data(plan_path: Path) -> None:
    def mixed(ctx: CheckContext) -> Iterator[Finding]:
        yield finding("T-MIX", Severity.BLOCKER, "bad.test")
        yield finding("T-MIX", Severity.WARNING, "meh.test")
        yield finding("T-MIX", Severity.PASS, "good.test")

    def broken(ctx: CheckContext) -> Iterator[Finding]:
        raise RuntimeError("resolver exploded")

    data = run_data(
        run_checks(load_plan(plan_path), [spec("T-MIX", mixed), spec("T-BRK", broken, "source")]), 1, None
    )
    assert (
        data["summary"]["blocker"] == 1 and data["summary"]["warning"] == 1 and data["summary"]["pass"] == 1
    )
    root = ET.fromstring(render_junit(data))  # noqa: S314 - our own output
    dns = root.find("testsuite[@name='readiness.dns']")
    assert dns is not None and dns.get("failures") == "1" and len(dns) == 3
    failure = dns.find("testcase[@name='T-MIX bad.test']/failure")
    assert failure is not None and failure.get("type") == "blocker"
    error = root.find("testsuite[@name='readiness.source']/testcase/error")
    assert error is not None and "resolver exploded" in (error.get("message") or "")
    assert "| blocker | T-MIX | bad.test |" in render_markdown(data)
    assert "BLOCKER T-MIX domain bad.test" in render_table(data)


def test_check_ids_are_unique_and_categorised() -> None:
    # all_checks() comes from a dict keyed by id: uniqueness is the registry refusing a second owner.
    specs = all_checks()
    taken = specs[0]
    with pytest.raises(ValueError, match="registered twice"):
        check(taken.id, "another check", category=taken.category)(lambda ctx: [])
    assert all_checks() == specs
    with pytest.raises(ValueError, match="unknown category"):
        check("T-NEW-001", "a check", category="nonsense")
    assert {s.category for s in specs} >= {"capacity", "directory", "dns", "source"}


def test_cli_exit_codes(
    plan_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    from dovecot_lab import Lab

    lab = Lab(source_dovecot, target_dovecot, plan_path.parent, plan_path)
    ok = lab.cutover("check", "--plan", str(plan_path), "--only", "SRC-AUTH-001", "--output", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["summary"]["pass"] == 1
    bad = lab.cutover(
        "check",
        "--plan",
        str(plan_path),
        "--only",
        "SRC-AUTH-001",
        env=lab.env | {"SRC_MASTER_PW": "nope-123"},
    )
    assert bad.returncode == 1 and "BLOCKER SRC-AUTH-001" in bad.stdout and "nope-123" not in bad.stdout
    assert lab.cutover("check", "--plan", str(plan_path), "--only", "NOPE-999").returncode == 2

    # A server that accepts and never speaks: the check errors at its deadline, the run says incomplete.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True).start()
    plan_path.write_text(
        plan_path.read_text().replace(
            f"port = {source_dovecot.imap_port}", f"port = {silent.getsockname()[1]}"
        )
    )
    # The server never answers: only the check's deadline can end this command (its reason says so).
    hung = lab.cutover("check", "--plan", str(plan_path), "--only", "SRC-AUTH-001", "--output", "json")
    assert hung.returncode == 2
    (check,) = json.loads(hung.stdout)["checks"]
    assert check["state"] == "error" and "timed out" in check["reason"]
    silent.close()


def test_findings_sharing_a_fingerprint_are_kept_apart(plan_path: Path) -> None:
    def twice(ctx: CheckContext) -> Iterator[Finding]:
        yield finding("T-TWICE", Severity.WARNING)
        yield finding("T-TWICE", Severity.WARNING)

    plan = load_plan(plan_path)
    run = run_checks(plan, [spec("T-TWICE", twice)])
    first, second = run.findings
    assert first.fingerprint != second.fingerprint and second.key == "#2"
    run_id, _ = record(StateStore(plan.state_db), run, "twice")
    stored = StateStore(plan.state_db).query("SELECT COUNT(*) AS n FROM findings WHERE run_id = ?", (run_id,))
    assert stored[0]["n"] == 2


def test_a_waiver_with_a_key_covers_only_that_finding() -> None:
    from checks.model import Outcome

    tls = Finding("T-HUB", Severity.WARNING, "server", "hub:25", "certificate expires soon", key="tls")
    size = Finding("T-HUB", Severity.BLOCKER, "server", "hub:25", "SIZE too small", key="size")
    outcome = Outcome("T-HUB", "hub", "capacity", State.OK, [tls, size])
    apply_waivers([outcome], [Waiver("T-HUB", "hub:25", "renewal booked", date(2099, 1, 1), key="tls")])
    assert [f.waiver is not None for f in outcome.findings] == [True, False]

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
from cockpit.demo import data
from cockpit.demo.lab import Lab
from runners.engine.wave import RunResult, run_wave
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state.read_models.status import status_data
from runners.verify import VerifyReport, verify_wave

PILOT = "pilot"
#: Marks a directory as a demo state directory, so that a rerun may clear it.
MARKER = ".cutover-demo"
SECRETS = {
    "legacy-master": data.LEGACY_MASTER[1],
    "target-master": data.TARGET_MASTER[1],
    "legacy-ldap": data.LEGACY_READER[1],
    "target-ldap": data.TARGET_READER[1],
}


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


def write_plan(lab: Lab, state_dir: Path) -> Path:
    """The plan and mailbox list for the lab, with the secrets in files beside them."""
    state_dir = state_dir.resolve()
    (state_dir / "secrets").mkdir(parents=True, exist_ok=True)
    (state_dir / MARKER).write_text("written by cutover demo; removed or replaced by the next demo\n")
    # Absolute paths: [directory.*] bind_password file: references are not resolved against the
    # plan's directory (reported; the endpoints' references are).
    pw = {name: state_dir / "secrets" / f"{name}.pw" for name in SECRETS}
    for name, value in SECRETS.items():
        pw[name].write_text(value + "\n")
        pw[name].chmod(0o600)
    rows = [f"{m.address},{m.address},{m.wave}" for m in lab.data.mailboxes]
    (state_dir / "mailboxes.csv").write_text("source,target,wave\n" + "\n".join(rows) + "\n")
    s = lab.services
    plan = state_dir / "plan.toml"
    plan.write_text(
        f"""# Written by `cutover demo` for its embedded lab (every server on {lab.host}).
[source]
type = "imap"
host = "{lab.host}"
port = {s["legacy-imap"].port}
security = "plain"
auth = "master"
master_user = "{data.LEGACY_MASTER[0]}"
master_password = "file:{pw["legacy-master"]}"
timeout = 20

[target]
type = "imap"
host = "{lab.host}"
port = {s["target-imap"].port}
security = "plain"
auth = "master"
master_user = "{data.TARGET_MASTER[0]}"
master_password = "file:{pw["target-master"]}"
max_message_bytes = {data.TARGET_LIMIT}
timeout = 20

[mailboxes]
csv = "mailboxes.csv"

[state]
dir = "state"

[run]
workers = 4

[dns]
resolver = "{s["dns"].address}"
nameservers = {{ "{data.DOMAIN}" = ["{s["dns"].address}"] }}
legacy_mx = ["mx*.legacy.{data.DOMAIN}"]
target_mx = ["*.mail.cloud.example"]
spf_includes = ["spf.cloud.example"]
max_ttl = 300

[directory.source]
url = "{s["legacy-ldap"].url}"
base = "{data.LEGACY_PEOPLE}"
preset = "inetlocalmailrecipient"
bind_dn = "{data.LEGACY_READER[0]}"
bind_password = "file:{pw["legacy-ldap"]}"
timeout = 10

[directory.target]
url = "{s["target-ldap"].url}"
base = "{data.TARGET_USERS}"
preset = "ad"
bind_dn = "{data.TARGET_READER[0]}"
bind_password = "file:{pw["target-ldap"]}"
timeout = 10

[capacity]
smtp_hubs = ["{s["smtp-hub"].address}"]
mailbox_quota_bytes = 52428800
window_hours = 8
throughput = 20

[checks]
timeout = 60
""",
        encoding="utf-8",
    )
    return plan


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

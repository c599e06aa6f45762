"""Text from hostile servers and careless files: no escape sequence on the operator's terminal, no
forged log line, no password anywhere a run leaves something (issue #16)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot_lab import CUTOVER, wait_for
from hostile_imap import EVIL, HostileImap, hostile_imap
from servers.dovecot import DovecotServer

from checks.model import Finding, Severity, State
from checks.render import render_markdown
from cockpit.app import CockpitApp
from cockpit.commands.preflight import connect_warnings
from cockpit.screens.mailbox import FailureView, MailboxView
from runners.errors import CommandError, PlanError
from runners.plan.loader import load_plan
from runners.safe_text import file_name_part, register_secret, safe, safe_lines, scrub, visible
from runners.state.mailbox_views import MessageIssue
from runners.state.read_models.snapshot import take
from runners.state.store import StateStore

PASSWORD = "Hostile-Master-Pw-7f3a"
#: What must never reach a terminal, a log or a display text: ESC, BEL, CR (and no other C0 but LF).
RAW = ("\x1b", "\x07", "\r", "\x9b")
#: Embeddings, overrides and isolates: they reorder what a line shows (CVE-2021-42574).
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def assert_inert(text: str, where: str) -> None:
    found = [repr(c) for c in RAW if c in text]
    assert not found, f"{where} carries {', '.join(found)}"


# -- the one function -------------------------------------------------------------------------------


def test_visible_shows_every_control_on_one_line() -> None:
    shown = visible("a\x1b]0;title\x07b\x1b]52;c;cm0=\x07\x1b[2Jc\r\nd\x9be\u202ef\x7f")
    assert shown == "a\u241b]0;title\u2407b\u241b]52;c;cm0=\u2407\u241b[2Jc\u240d\u240ad\ufffde\ufffdf\u2421"
    assert visible("plain Grüße 日本") == "plain Grüße 日本"
    assert safe_lines("one\ntwo\r\n\x1b") == "one\ntwo\u240d\n\u241b"


def test_no_code_point_survives_that_could_act_on_a_terminal_or_break_a_line() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    shown = visible(every)
    assert len(shown.splitlines()) == 1
    acting = [c for c in shown if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI_CONTROLS]
    assert acting == []
    assert safe(every) == shown  # safe inlines visible (and scrub): the same for every code point


def test_scrub_removes_a_registered_secret_and_its_quoted_spelling() -> None:
    register_secret('pw"with\\quote')
    register_secret("abc")  # too short to scrub: it would blank ordinary words
    text = 'A2 LOGIN "u*admin" "pw\\"with\\\\quote" and pw"with\\quote, abc'
    assert scrub(text) == 'A2 LOGIN "u*admin" "********" and ********, abc'
    assert safe(text + "\x1b") == scrub(text) + "\u241b"  # safe inlines scrub (and visible)


def test_server_text_is_safe_from_the_moment_the_error_is_built() -> None:
    register_secret(PASSWORD)
    error = CommandError("imap:143", f"SELECT Evil{EVIL}", f'NO {EVIL} LOGIN "u" "{PASSWORD}"')
    for text in (error.operation, error.server_text, str(error)):
        assert_inert(text, "the error")
        assert PASSWORD not in text and "\n" not in text


@pytest.mark.parametrize(
    "wave", ["x/../../../EVIL", "../x", ".hidden", "a\x1b[2Jb", "/abs", "", "ü" * 100, "ok-wave_1.2"]
)
def test_a_wave_name_becomes_one_harmless_file_name_part(tmp_path: Path, wave: str) -> None:
    part = file_name_part(wave)
    assert "/" not in part and not part.startswith(".") and part.isprintable() and len(part) <= 73
    assert (tmp_path / f"detached-{part}.log").resolve().parent == tmp_path.resolve()
    assert (part == wave) == (wave == "ok-wave_1.2")
    assert file_name_part("a/b") != file_name_part("a_b")  # two waves never share a file


def test_markdown_report_escapes_html_and_table_metacharacters() -> None:
    from checks.model import Outcome
    from checks.render import run_data
    from checks.runner import CheckRun

    hostile = "<img src=x onerror=alert(1)>@example.test"
    finding = Finding(
        "DIR-X", Severity.WARNING, "address", hostile, f"odd | {hostile}", observed="*bold* [l](u)"
    )
    run = CheckRun(
        phase="pre", outcomes=[Outcome("DIR-X", "t", "directory", State.OK, [finding])], seconds=0.1
    )
    report = render_markdown(run_data(run, None, None))
    row = next(line for line in report.splitlines() if line.startswith("| warning"))
    assert "<img" not in report and "&lt;img src=x onerror=alert(1)&gt;@example.test" in row
    assert row.count(" | ") == 4  # the finding's "|" did not open a cell
    assert "\\*bold\\* \\[l\\](u)" in row


# -- a hostile source, end to end -------------------------------------------------------------------


def write_plan(root: Path, source_port: int, target: DovecotServer, *, wave: str = "pilot") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mailboxes.csv").write_text(f"source,target,wave\nalice,alice,{wave}\n", encoding="utf-8")
    plan = root / "plan.toml"
    plan.write_text(
        f"""
[source]
type = "imap"
host = "127.0.0.1"
port = {source_port}
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:SRC_MASTER_PW"
login_template = "{{user}}*{{master}}"

[target]
type = "imap"
host = "127.0.0.1"
port = {target.imap_port}
security = "plain"
auth = "master"
master_user = "{target.master_user}"
master_password = "env:DST_MASTER_PW"

[mailboxes]
csv = "mailboxes.csv"
""",
        encoding="utf-8",
    )
    return plan


def cutover(plan: Path, target: DovecotServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SRC_MASTER_PW=PASSWORD, DST_MASTER_PW=target.master_password)
    return subprocess.run(
        [*CUTOVER, *args, "--plan", str(plan)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=plan.parent,
        preexec_fn=lambda: os.umask(0o022),  # the careless default: files must be private anyway
    )


def state_files(plan: Path) -> Iterator[Path]:
    yield from (p for p in (plan.parent / ".cutover").rglob("*") if p.is_file())


def display_texts(plan: Path) -> list[str]:
    """Every text the store keeps for display (the folder's own name is data, kept as the server spells it)."""
    db = sqlite3.connect(plan.parent / ".cutover" / "state.db")
    try:
        queries = (
            "SELECT error FROM mailboxes",
            "SELECT error FROM folders",
            "SELECT reason FROM messages",
            "SELECT reason FROM message_attempts",
            "SELECT folder FROM events",
            "SELECT message FROM events",
        )
        return [str(v) for q in queries for (v,) in db.execute(q).fetchall() if v is not None]
    finally:
        db.close()


@pytest.fixture
def evil_source() -> Iterator[HostileImap]:
    with hostile_imap() as server:
        yield server


def test_escape_sequences_from_the_source_reach_no_terminal_log_or_store(
    tmp_path: Path, evil_source: HostileImap, target_dovecot: DovecotServer
) -> None:
    plan = write_plan(tmp_path / "lab", evil_source.port, target_dovecot)
    run = cutover(plan, target_dovecot, "run", "--wave", "pilot", "--progress", "plain")
    assert run.returncode == 1, run.stderr
    outputs = {
        "run": run,
        "status": cutover(plan, target_dovecot, "status"),
        "status --failures": cutover(plan, target_dovecot, "status", "--failures"),
        "status json": cutover(plan, target_dovecot, "status", "--output", "json"),
        "verify": cutover(plan, target_dovecot, "verify", "--wave", "pilot"),
        **{
            f"check {output}": cutover(
                plan, target_dovecot, "check", "--category", "source", "--output", output
            )
            for output in ("table", "json", "junit", "markdown")
        },
    }
    for name, proc in outputs.items():
        assert_inert(proc.stdout, f"{name}'s stdout")
        assert_inert(proc.stderr, f"{name}'s stderr")
    assert "Evil\u241b]0;owned\u2407" in outputs["status"].stdout  # shown, not dropped
    assert not any(line.startswith("FORGED") for line in outputs["status"].stdout.splitlines())
    logs = list((plan.parent / ".cutover" / "logs").glob("*.log"))
    assert logs
    for log in logs:
        text = log.read_text(encoding="utf-8")
        assert_inert(text, log.name)
        assert not any(line.startswith("FORGED") for line in text.splitlines()), "a forged log line"
    texts = display_texts(plan)
    assert any("\u241b" in t for t in texts), "the server's words are stored, shown"
    for text in texts:
        assert_inert(text, "a display text of the store")
        assert "\n" not in text


def test_the_state_directory_is_private_whatever_the_umask(
    tmp_path: Path, evil_source: HostileImap, target_dovecot: DovecotServer
) -> None:
    plan = write_plan(tmp_path / "lab", evil_source.port, target_dovecot)
    cutover(plan, target_dovecot, "run", "--wave", "pilot", "--progress", "plain")
    state = plan.parent / ".cutover"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
    files = list(state_files(plan))
    assert any(f.name == "state.db" for f in files) and any(f.suffix == ".log" for f in files)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # -wal and -shm exist while a writer is connected: they take state.db's mode.
    old = os.umask(0o022)
    try:
        store = StateStore(plan.parent / ".cutover" / "state.db")
        store.event(None, "info", "test", "hold the database open")
        for suffix in ("-wal", "-shm"):
            assert stat.S_IMODE((state / f"state.db{suffix}").stat().st_mode) == 0o600
        store.close()
    finally:
        os.umask(old)


def test_a_wave_name_cannot_steer_the_detached_log_out_of_the_state_directory(
    tmp_path: Path, target_dovecot: DovecotServer
) -> None:
    with hostile_imap(echo_login=True) as server:
        plan = write_plan(tmp_path / "lab", server.port, target_dovecot, wave="x/../../../EVIL")
        proc = cutover(
            plan, target_dovecot, "run", "--wave", "x/../../../EVIL", "--detach", "--output", "json"
        )
        assert proc.returncode == 0, proc.stderr
        started = json.loads(proc.stdout)
        log = Path(started["log"])
        assert log.resolve().parent == (plan.parent / ".cutover" / "logs").resolve()
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert not list(tmp_path.rglob("EVIL*"))
        wait_for(lambda: not _alive(started["pid"]), seconds=60)
    text = log.read_text(encoding="utf-8")
    assert "AUTHENTICATIONFAILED" in text  # the detached run's own output: safe too
    assert_inert(text, "the detached log")
    assert PASSWORD not in text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_a_server_echoing_the_login_leaks_the_password_nowhere(
    tmp_path: Path, target_dovecot: DovecotServer
) -> None:
    with hostile_imap(echo_login=True) as server:
        plan = write_plan(tmp_path / "lab", server.port, target_dovecot)
        outputs = [
            cutover(plan, target_dovecot, "run", "--wave", "pilot", "--progress", "plain"),
            cutover(plan, target_dovecot, "run", "--wave", "pilot", "--output", "json", "--retry-failed"),
            cutover(plan, target_dovecot, "status", "--failures"),
            cutover(plan, target_dovecot, "status", "--output", "json"),
            cutover(plan, target_dovecot, "check", "--category", "source", "--output", "json"),
            cutover(plan, target_dovecot, "check", "--category", "source", "--output", "markdown"),
        ]
    everything = "".join(p.stdout + p.stderr for p in outputs)
    assert "AUTHENTICATIONFAILED" in everything and "********" in everything  # the echo happened
    assert PASSWORD not in everything
    for f in state_files(plan):  # the store (every table, its -wal too) and every log
        assert PASSWORD.encode() not in f.read_bytes(), f


def test_the_cockpit_draws_no_escape_sequence(
    tmp_path: Path, evil_source: HostileImap, target_dovecot: DovecotServer
) -> None:
    from cockpit.screens.triage import TriageView

    plan_path = write_plan(tmp_path / "lab", evil_source.port, target_dovecot)
    cutover(plan_path, target_dovecot, "run", "--wave", "pilot", "--progress", "plain")
    cutover(plan_path, target_dovecot, "check", "--category", "source")  # findings for the readiness view
    os.environ.setdefault("SRC_MASTER_PW", PASSWORD)
    plan = load_plan(plan_path)
    raw_issue = MessageIssue(  # as an older version may have stored it: raw
        folder="Evil" + EVIL,
        uid=1,
        size=10,
        internaldate=None,
        status="failed",  # type: ignore[arg-type]
        reason=EVIL,
        attempts=1,
        source_name="Evil" + EVIL,
        key="1",
        uidvalidity=1,
    )

    async def scenario() -> dict[str, str]:
        app = CockpitApp(plan, read_only=True, poll=False)
        screens = {}

        async def settle() -> None:
            await pilot.pause()
            app.apply(take(StateStore(plan.state_db), plan, query=app.current_query()))
            await app.workers.wait_for_complete()
            await pilot.pause()

        async with app.run_test(size=(160, 48)) as pilot:
            await settle()
            for key, name in (("m", "mailboxes"), ("l", "log"), ("r", "readiness")):
                await pilot.press(key)
                await settle()
                screens[name] = app.export_screenshot()
                await pilot.press("escape")
            app.open_mailbox("alice")
            await settle()
            assert isinstance(app.screen, MailboxView)
            screens["mailbox"] = app.export_screenshot()
            app.open_failure("alice", raw_issue)
            await settle()
            assert isinstance(app.screen, FailureView)
            screens["failure"] = app.export_screenshot()
            await pilot.press("escape")
            await pilot.press("u")
            await settle()
            assert isinstance(app.screen, TriageView)
            app.screen.start("alice")
            await settle()
            screens["triage"] = app.export_screenshot()
        return screens

    screens = asyncio.run(scenario())
    for name, svg in screens.items():
        assert_inert(svg, f"the {name} view")
    for name in ("mailbox", "failure", "readiness"):
        assert "\u241b" in screens[name], name  # the folder or the server's words drawn, escapes shown


# -- careless files ---------------------------------------------------------------------------------


def test_a_secret_others_can_read_warns_and_strict_plans_refuse(tmp_path: Path) -> None:
    secret = tmp_path / "master.pw"
    secret.write_text("s3cret-value\n", encoding="utf-8")
    secret.chmod(0o644)
    plan = tmp_path / "plan.toml"
    (tmp_path / "mailboxes.csv").write_text("source,target,wave\nalice,alice,pilot\n", encoding="utf-8")
    text = f"""
[source]
type = "imap"
host = "127.0.0.1"
security = "tls"
tls_verify = false
auth = "master"
master_user = "admin"
master_password = "file:{secret}"

[target]
type = "imap"
host = "127.0.0.1"
auth = "master"
master_user = "admin"
master_password = "Literal-Pw-123"

[mailboxes]
csv = "mailboxes.csv"
"""
    plan.write_text(text, encoding="utf-8")
    plan.chmod(0o644)
    warnings = connect_warnings(load_plan(plan))
    assert any("tls_verify = false" in w and w.startswith("source") for w in warnings)
    assert any(f"chmod 600 {secret}" in w and "(permissions 0644)" in w for w in warnings)
    assert any(f"chmod 600 {plan}" in w and "literal password" in w for w in warnings)
    assert all("s3cret-value" not in w and "Literal-Pw-123" not in w for w in warnings)

    plan.write_text(text + "\n[security]\nstrict_permissions = true\n", encoding="utf-8")
    with pytest.raises(PlanError) as refused:
        load_plan(plan)
    assert refused.value.key == "security.strict_permissions" and "chmod 600" in refused.value.message
    secret.chmod(0o600)
    plan.chmod(0o600)
    assert [w for w in connect_warnings(load_plan(plan)) if "chmod" in w] == []


def test_every_command_that_connects_warns_about_tls_verify(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    (tmp_path / "mailboxes.csv").write_text("source,target,wave\nalice,alice,pilot\n", encoding="utf-8")
    plan.write_text(
        """
[source]
type = "imap"
host = "127.0.0.1"
port = 1
tls_verify = false
auth = "master"
master_user = "admin"
master_password = "env:NOPE"

[target]
type = "imap"
host = "127.0.0.1"
port = 1
auth = "master"
master_user = "admin"
master_password = "env:NOPE"

[mailboxes]
csv = "mailboxes.csv"
""",
        encoding="utf-8",
    )
    for command in (["verify", "--wave", "pilot"], ["check", "--category", "source"]):
        proc = subprocess.run(
            [*CUTOVER, *command, "--plan", str(plan)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert "source TLS certificates are NOT verified (tls_verify = false)" in proc.stderr, command
    status = subprocess.run(
        [*CUTOVER, "status", "--plan", str(plan)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert "tls_verify" not in status.stderr  # status never connects


def test_safe_is_idempotent() -> None:
    once = safe(EVIL)
    assert safe(once) == once

"""The router's directory lookup against a real slapd, in its place in the order (after the store,
before static overrides), through ``cutover proxy route`` and through a real login; and ``cutover
proxy`` run as the operator runs it, stopped by SIGTERM."""

from __future__ import annotations

import imaplib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DovecotFactory
from proxy_harness import QUICK_FAILURES, USERS, ProxyThread, Recorder, switch_wave, write_proxy_plan
from servers.dovecot import DovecotServer
from servers.slapd import LEGACY_SUFFIX, READER_DN, SlapdServer, ldif_entry, legacy_person

from runners.plan.loader import load_plan
from runners.proxy.contracts import DecidedBy

CUTOVER = [sys.executable, "-m", "cockpit.cli"]
PEOPLE = f"ou=proxy,{LEGACY_SUFFIX}"
LEGACY_HOST, TARGET_HOST = "imap.legacy.test", "imap.target.test"
BIND_ENV = "CUTOVER_TEST_PROXY_BIND"


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    people = [
        legacy_person(PEOPLE, "alice", "alice@legacy.test", mailHost=[LEGACY_HOST]),
        legacy_person(PEOPLE, "carol", "carol@legacy.test", mailHost=[TARGET_HOST]),
        legacy_person(PEOPLE, "dave", "dave@legacy.test", mailHost=["archive.legacy.test"]),
        legacy_person(PEOPLE, "erin", "erin@legacy.test"),  # no routing attribute
    ]
    ldif = ldif_entry(PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["proxy"]}) + "".join(people)
    server = SlapdServer(ldif).start()
    yield server
    server.stop()


def directory_tail(slapd: SlapdServer, static: str = "") -> str:
    return f"""
[switch.directory]
url = "{slapd.url}"
base = "{PEOPLE}"
bind_dn = "{READER_DN}"
bind_password = "env:{BIND_ENV}"
attribute = "mailHost"
legacy_value = "{LEGACY_HOST}"
target_value = "{TARGET_HOST}"

[proxy.routing]
match = "uid"
values = {{ "archive.legacy.test" = "target" }}
static = {{ erin = "target", carol = "legacy" {static} }}
"""


@pytest.fixture
def bind_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from servers.slapd import READER_PASSWORD

    monkeypatch.setenv(BIND_ENV, READER_PASSWORD)


def cutover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CUTOVER, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip


def test_the_directory_decides_after_the_store_and_before_static_overrides(
    tmp_path: Path, slapd: SlapdServer, dovecot_factory: DovecotFactory, bind_password: None
) -> None:
    legacy: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    target: DovecotServer = dovecot_factory({**USERS, "carol": "carol-secret"}, extra_conf=QUICK_FAILURES)
    plan_path, ports = write_proxy_plan(tmp_path, legacy, target, tail=directory_tail(slapd))
    plan = load_plan(plan_path)

    done = cutover("proxy", "route", "carol", "--plan", str(plan_path), "--output", "json")
    assert done.returncode == 0, done.stderr
    decided = json.loads(done.stdout)
    assert (decided["backend"], decided["decided_by"], decided["reason"]) == (
        "target",
        "directory",
        f"mailHost={TARGET_HOST}",
    )
    done = cutover("proxy", "route", "dave", "--plan", str(plan_path))  # a value the plan maps itself
    assert (
        done.returncode == 0
        and "dave: target (decided by directory: mailHost=archive.legacy.test)" in done.stdout
    )
    done = cutover("proxy", "route", "erin", "--plan", str(plan_path))  # no attribute: the static override
    assert done.returncode == 0 and "erin: target (decided by static" in done.stdout
    done = cutover("proxy", "route", "zoe", "--plan", str(plan_path))  # nobody knows zoe
    assert done.returncode == 1 and "zoe: legacy (decided by default" in done.stdout

    recorder = Recorder()
    with ProxyThread(plan_path, observers=[recorder]) as proxy:
        switch_wave(plan, "pilot")
        proxy.poll()
        for login, password in (("carol", "carol-secret"), ("alice", "alice-secret")):
            client = imaplib.IMAP4("127.0.0.1", ports["imap"])
            assert client.login(login, password)[0] == "OK"
            client.logout()
    routes = [e.route for e, _ in recorder.events]
    assert [(r.backend, r.decided_by) for r in routes if r] == [
        ("target", DecidedBy.DIRECTORY),  # carol: the directory, before her static override to legacy
        ("target", DecidedBy.STORE),  # alice: her wave is switched, whatever the directory still says
    ]  # fmt: skip


def test_a_directory_that_cant_answer_decides_nothing(
    tmp_path: Path, dovecot_factory: DovecotFactory, bind_password: None
) -> None:
    down = SlapdServer("").start()
    down.stop()  # its port is now closed
    legacy: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    plan_path, _ = write_proxy_plan(tmp_path, legacy, legacy, tail=directory_tail(down))
    done = cutover("proxy", "route", "erin", "--plan", str(plan_path), "--output", "json")
    decided = json.loads(done.stdout)
    assert (done.returncode, decided["backend"], decided["decided_by"]) == (0, "target", "static")
    done = cutover("proxy", "route", "carol", "--plan", str(plan_path), "--output", "json")
    assert json.loads(done.stdout)["backend"] == "legacy"  # her static override, since the directory is down


def test_cutover_proxy_runs_in_the_foreground_until_sigterm(
    tmp_path: Path, dovecot_factory: DovecotFactory
) -> None:
    legacy: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    plan_path, ports = write_proxy_plan(tmp_path, legacy, legacy)
    proc = subprocess.Popen([*CUTOVER, "proxy", "--plan", str(plan_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    try:
        assert proc.stdout is not None
        listening = [proc.stdout.readline(), proc.stdout.readline()]
        assert listening == [f"cutover proxy: imap (starttls) on 127.0.0.1:{ports['imap']}\n",
                             f"cutover proxy: pop3 (starttls) on 127.0.0.1:{ports['pop3']}\n"]  # fmt: skip
        client = imaplib.IMAP4("127.0.0.1", ports["imap"])
        assert client.login("alice", "alice-secret")[0] == "OK"
        client.logout()
        taken = cutover("proxy", "--plan", str(plan_path))  # a second one can't listen there
        assert taken.returncode == 2 and "the proxy can't listen" in taken.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert "alice-secret" not in (proc.stderr.read() if proc.stderr else "")
    help_text = cutover("proxy", "--help")
    assert help_text.returncode == 0 and "route USER" in help_text.stdout

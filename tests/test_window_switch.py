"""``cutover switch`` against real servers on loopback: Dovecot on both sides (the final pass), Knot
DNS (a primary taking TSIG-signed updates and a secondary transferring from it: MX), slapd (the
routing attribute). Run as an operator would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import ldap3
import pytest
from dovecot_lab import CUTOVER, Lab, append_many, make_lab
from servers.dovecot import DovecotServer
from servers.knot import (
    TARGET_MX,
    TSIG_ALGORITHM,
    TSIG_NAME,
    TSIG_SECRET,
    ZONE,
    KnotPair,
    KnotServer,
    find_knotd,
)
from servers.slapd import LEGACY_SUFFIX, SlapdServer, find_slapd, ldif_entry, legacy_person
from servers.tlsca import Leaf

from runners.plan.secret import Secret
from runners.plan.switch_model import DomainRecords, HostPort, MxRecord, SwitchDns, TsigSettings
from runners.state.check_rows import CheckRunRecord
from runners.state.store import StateStore
from runners.switch.dns_query import AuthServer, served
from runners.switch.dns_update import Primary, apply_records
from runners.switch.records import rdata_texts, records_for

PEOPLE = f"ou=window,{LEGACY_SUFFIX}"
SWITCH_DN = f"cn=window-switch,{LEGACY_SUFFIX}"
SWITCH_PASSWORD = "window-switch-secret"
LEGACY_HOST, TARGET_HOST = "imap.legacy.test", "imap.target.test"
USERS = ("alice", "bob")


class RoutingSlapd(SlapdServer):
    """The suite's slapd with an account that may write ``mailHost``."""

    def _render_conf(self, leaf: Leaf) -> str:
        acl = f'access to attrs=mailHost by dn.exact="{SWITCH_DN}" write by users read by * none\n'
        conf = super()._render_conf(leaf)
        return conf.replace("access to attrs=userPassword", acl + "access to attrs=userPassword", 1)


def routing_ldif() -> str:
    people = [legacy_person(PEOPLE, u, f"{u}@{ZONE}", mailHost=[LEGACY_HOST]) for u in USERS]
    return "".join(
        [
            ldif_entry(PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["window"]}),
            ldif_entry(SWITCH_DN, {"objectClass": ["organizationalRole", "simpleSecurityObject"],
                                   "cn": ["window-switch"], "userPassword": [SWITCH_PASSWORD]}),
            *people,
        ]
    )  # fmt: skip


@pytest.fixture
def knot() -> Iterator[KnotPair]:
    if find_knotd() is None:
        pytest.fail("knotd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    pair = KnotPair.create().start()
    yield pair
    print(pair.log_text())  # shown only when the test failed
    pair.stop()


@pytest.fixture
def slapd() -> Iterator[SlapdServer]:
    if find_slapd() is None:
        pytest.fail("slapd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    server = RoutingSlapd(routing_ldif()).start()
    yield server
    server.stop()


def switch_toml(knot: KnotPair, slapd: SlapdServer, *, confirm_timeout: float = 30) -> str:
    return f"""
[window]
hours = 4

[switch]
confirm_timeout = {confirm_timeout}
confirm_interval = 0.2

[switch.dns]
primary = "{knot.primary.address}:53"
tsig_key = "cutover-switch."
tsig_algorithm = "hmac-sha256"
tsig_secret = "env:WINDOW_TSIG"
nameservers = {{ "{ZONE}" = ["{knot.primary.address}:53", "{knot.secondary.address}:53"] }}
timeout = 3

[switch.dns.domains."{ZONE}"]
mx = [{{ host = "{TARGET_MX}", preference = 10 }}]

[switch.directory]
url = "{slapd.url}"
base = "{PEOPLE}"
bind_dn = "{SWITCH_DN}"
bind_password = "env:WINDOW_LDAP_PW"
attribute = "mailHost"
legacy_value = "{LEGACY_HOST}"
target_value = "{TARGET_HOST}"
timeout = 10
"""


class WindowLab:
    """A plan whose pilot wave (alice, bob of switch.test) is copied once and once more (a delta
    pass, measured), with a readiness check run in the store."""

    def __init__(self, lab: Lab, knot: KnotPair, slapd: SlapdServer) -> None:
        self.lab, self.knot, self.slapd = lab, knot, slapd
        self.env = {**lab.env, "WINDOW_TSIG": TSIG_SECRET, "WINDOW_LDAP_PW": SWITCH_PASSWORD}

    @property
    def store(self) -> StateStore:
        return StateStore(self.lab.root / ".cutover" / "state.db")

    def switch(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.lab.cutover(
            "switch", "--plan", str(self.lab.plan), "--wave", "pilot", *args, env=env or self.env
        )

    def switch_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.switch("--output", "json", *args)
        try:
            return proc.returncode, json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None

    def audit(self, *args: str) -> list[dict[str, Any]]:
        proc = self.lab.cutover(
            "audit", "--plan", str(self.lab.plan), "--output", "json", *args, env=self.env
        )
        assert proc.returncode == 0, proc.stderr
        return list(json.loads(proc.stdout)["actions"])

    def record_clean_check_run(self) -> None:
        """A readiness run in the store that found nothing (what `cutover check` leaves when all is well)."""
        self.store.record_check_run(
            CheckRunRecord(time.time(), 0.1, "pre", "all", True, "tester@lab"), [], []
        )


def make_window_lab(
    tmp_path: Path,
    source: DovecotServer,
    target: DovecotServer,
    knot: KnotPair,
    slapd: SlapdServer,
    **options: Any,
) -> WindowLab:
    lab = make_lab(tmp_path / "lab", source, target, mailboxes=tuple((u, u, "pilot") for u in USERS),
                   tail=switch_toml(knot, slapd, **options))  # fmt: skip
    (lab.root / "mailboxes.csv").write_text(
        "source,target,wave,address\n" + "".join(f"{u},{u},pilot,{u}@{ZONE}\n" for u in USERS),
        encoding="utf-8",
    )
    for user in USERS:
        append_many(
            source, user, "INBOX", [f"Subject: {user} {i}\r\n\r\nbody {i}\r\n".encode() for i in range(5)]
        )
    window = WindowLab(lab, knot, slapd)
    for _ in range(2):  # the first pass, then a delta pass: measured
        code, summary = lab.run(env=window.env)
        assert code == 0, summary
    return window


@pytest.fixture
def window(
    tmp_path: Path,
    source_dovecot: DovecotServer,
    target_dovecot: DovecotServer,
    knot: KnotPair,
    slapd: SlapdServer,
) -> WindowLab:
    return make_window_lab(tmp_path, source_dovecot, target_dovecot, knot, slapd)


def mx_on(server: KnotServer) -> tuple[str, ...]:
    return rdata_texts(served(AuthServer(server.address), dns.name.from_text(ZONE), dns.rdatatype.MX, 3.0))


def mail_host(slapd: SlapdServer, user: str) -> list[str]:
    with ldap3.Connection(ldap3.Server(slapd.url), SWITCH_DN, SWITCH_PASSWORD, auto_bind=True) as conn:
        conn.search(f"uid={user},{PEOPLE}", "(objectClass=*)", attributes=["mailHost"])
        return [str(v) for v in conn.entries[0]["mailHost"].values]


def test_happy_path_copying_to_switched(window: WindowLab) -> None:
    window.record_clean_check_run()
    append_many(window.lab.source, "alice", "INBOX", [b"Subject: late\r\n\r\nnew before the window\r\n"])
    serial_before = window.knot.primary.serial()

    proc = window.switch("--output", "json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["stage_before"], data["stage"]) == ("copying", "switched")
    # The steps as they went, on stderr (stdout is the JSON document): the final pass's clock and ETA.
    assert "final pass of pilot: 2 mailbox(es); 4 h window; expected ~" in proc.stderr
    assert "routing proxy table: not yet (issue #14)" in proc.stderr
    ready, final, switched = data["steps"]
    assert [s["step"] for s in data["steps"]] == ["ready", "final-pass", "switched"]
    assert all(c["holds"] for c in ready["checked"])
    assert {c["name"] for c in ready["checked"]} == {
        "first-pass", "undecided-failures", "readiness-blockers", "delta-fits-window", "rollback-copy-back"
    }  # fmt: skip
    assert (final["did"]["status"], final["did"]["copied"]) == ("ok", 1)  # the new message: a delta pass
    assert final["did"]["seconds"] > 0 and final["did"]["expected_seconds"] is not None
    print(f"final pass: {final['did']['seconds']:.2f} s; switch step: {switched['seconds']:.2f} s")
    directory = switched["did"]["directory"]
    assert [(u["address"], u["outcome"]) for u in directory["users"]] == [
        (f"alice@{ZONE}", "changed"), (f"bob@{ZONE}", "changed")
    ]  # fmt: skip
    assert switched["did"]["dns"]["update"]["sent"] is True
    assert switched["did"]["dns"]["confirmation"]["confirmed"] is True
    assert switched["did"]["proxy"] == "routing proxy table: not yet (issue #14)"
    # What the servers serve now, asked directly: both name servers, and the directory.
    assert mx_on(window.knot.primary) == mx_on(window.knot.secondary) == (f"10 {TARGET_MX}",)
    assert window.knot.primary.serial() == (serial_before or 0) + 1
    assert mail_host(window.slapd, "alice") == mail_host(window.slapd, "bob") == [TARGET_HOST]
    # Where the wave stands, for the status command, and who did it.
    status = window.lab.status()
    assert [(w["wave"], w["stage"]) for w in status["window"]] == [("pilot", "switched")]
    text = window.lab.cutover("status", "--plan", str(window.lab.plan), env=window.env).stdout
    assert "wave pilot: switched since " in text
    actions = [(a["action"], a["detail"]) for a in window.audit("--wave", "pilot") if a["action"] != "launch"]
    assert actions == [("ready", "done"), ("final-pass", "done"), ("switched", "done"), ("switch:marks", "done"), ("switch:directory", "done"),
                       ("switch:dns-update", "done"), ("switch:dns-confirmed", "done")]  # by when each began  # fmt: skip
    # No secret anywhere: not in the output, not in the store.
    state = (window.lab.root / ".cutover" / "state.db").read_bytes()
    for secret in (TSIG_SECRET, SWITCH_PASSWORD):
        assert secret not in json.dumps(data) and secret.encode() not in state
    # A rerun finds the wave switched and changes nothing.
    again = window.switch()
    assert again.returncode == 0 and "already switched" in again.stdout
    assert window.knot.primary.serial() == (serial_before or 0) + 1


def test_interlocks_refuse_without_the_typed_name_and_pass_with_it(window: WindowLab) -> None:
    # No readiness run in the store: ready doesn't hold, and neither do the final pass's interlocks.
    proc = window.switch("--step", "ready")
    assert proc.returncode == 1
    assert "readiness-blockers: no readiness check has run" in proc.stdout + proc.stderr
    assert "--confirm pilot --reason" in proc.stderr
    assert window.store.steps_done("pilot") == []

    wrong = window.switch("--step", "ready", "--confirm", "pilott", "--reason", "window tonight")
    assert wrong.returncode == 1 and "is not the wave's" in wrong.stderr
    no_reason = window.switch("--step", "ready", "--confirm", "pilot")
    assert no_reason.returncode == 1 and "need a --reason" in no_reason.stderr

    code, data = window.switch_json("--step", "ready", "--confirm", "pilot", "--reason", "checks run by hand")
    assert code == 0 and data["stage"] == "ready"
    ready = window.audit("--wave", "pilot")[-1]
    assert (ready["action"], ready["params"]["confirm"], ready["params"]["reason"]) == (
        "ready", "pilot", "checks run by hand"
    )  # fmt: skip
    assert ready["params"]["overridden"] is True
    assert ready["who"].startswith(f"{os.environ.get('USER') or ''}")
    refused = [a for a in window.audit() if a["action"] == "ready" and a["detail"] == "refused"]
    assert len(refused) == 1

    # Launching the final pass asks again: the interlock holds it until the name is typed back.
    held = window.switch("--step", "final-pass")
    assert held.returncode == 1 and "final-pass refused for wave pilot" in held.stderr
    code, data = window.switch_json("--step", "final-pass", "--force", "--reason", "blockers reviewed")
    assert (code, data["stage"], data["steps"][0]["did"]["status"]) == (0, "final-pass", "ok")
    final = [a for a in window.audit("--wave", "pilot") if a["action"] != "launch"][-1]
    assert (final["action"], final["params"]["force"], final["params"]["overridden"]) == (
        "final-pass",
        True,
        True,
    )


def test_a_second_operator_is_refused_by_the_lease(window: WindowLab) -> None:
    window.record_clean_check_run()
    store = window.store
    assert store.take_wave_lease("pilot", "other@desk", 600) is None  # this (live) process holds it

    proc = window.switch()

    assert proc.returncode == 1
    assert "is being moved by other@desk" in proc.stderr
    assert store.steps_done("pilot") == []
    store.release_wave_lease("pilot")
    assert window.switch("--step", "ready").returncode == 0


def test_kill_between_dns_update_and_confirmation_resumes_without_a_second_update(window: WindowLab) -> None:
    window.record_clean_check_run()
    serial_before = window.knot.primary.serial() or 0

    killed = window.switch(env={**window.env, "CUTOVER_FAULT": "kill-switch-dns-sent:1"})

    assert killed.returncode == -9
    assert window.knot.primary.serial() == serial_before + 1  # the UPDATE was applied, then the kill
    assert window.store.steps_done("pilot")[-1] == "switch:directory"  # the UPDATE's outcome never recorded
    # What the primary served before was recorded before the UPDATE went out: what a DNS rollback needs.
    (attempt,) = [s for s in window.store.wave_steps("pilot") if s.step == "switch:dns-update"]
    assert attempt.status == "started"
    assert attempt.params["changes"] == [
        {
            "label": f"{ZONE}. MX",
            "before": ["10 mx.legacy.test.", "20 mx2.legacy.test."],
            "after": [f"10 {TARGET_MX}"],
        }
    ]
    lease = window.store.wave_lease("pilot")
    assert lease is not None  # left behind by the dead process: taken over below

    code, data = window.switch_json()

    assert code == 0, data
    assert [s["step"] for s in data["steps"]] == ["switched"]  # resumed at the switch, no second final pass
    update = data["steps"][0]["did"]["dns"]["update"]
    assert update["sent"] is False  # read first: already true, nothing sent
    assert window.knot.primary.serial() == serial_before + 1  # exactly one UPDATE reached the zone
    assert data["steps"][0]["did"]["directory"] == "done before this run (resumed)"
    assert data["steps"][0]["did"]["marks"] == "done before this run (resumed)"  # never re-read
    assert mx_on(window.knot.secondary) == (f"10 {TARGET_MX}",)


def test_a_secondary_that_never_catches_up_fails_the_switch_after_the_deadline(
    tmp_path: Path,
    source_dovecot: DovecotServer,
    target_dovecot: DovecotServer,
    knot: KnotPair,
    slapd: SlapdServer,
) -> None:
    window = make_window_lab(tmp_path, source_dovecot, target_dovecot, knot, slapd, confirm_timeout=2)
    window.record_clean_check_run()
    knot.secondary.freeze()

    proc = window.switch()

    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "waiting for 1 of 2 servers" in out  # the step waits and says so, round after round
    assert f"{knot.secondary.address}" in out and "not confirmed after" in out
    assert window.store.steps_done("pilot")[-1] == "switch:dns-update"
    knot.secondary.thaw()
    serial = knot.primary.serial()
    code, data = window.switch_json()  # once it caught up, the switch completes without another UPDATE
    assert (code, data["stage"]) == (0, "switched")
    assert "update" not in data["steps"][0]["did"]["dns"]  # resumed at the confirmation
    assert data["steps"][0]["did"]["dns"]["confirmation"]["confirmed"] is True
    assert knot.primary.serial() == serial


def test_a_switched_wave_refuses_a_fresh_start(window: WindowLab) -> None:
    window.record_clean_check_run()
    assert window.switch().returncode == 0

    delta_code, summary = window.lab.run(env=window.env)  # a delta pass is fine
    assert delta_code == 0, summary
    assert summary["kind"] == "delta"
    # A mailbox never copied before can't start afresh on a live target.
    with (window.lab.root / "mailboxes.csv").open("a", encoding="utf-8") as csv:
        csv.write(f"carol,carol,pilot,carol@{ZONE}\n")
    proc = window.lab.cutover("run", "--plan", str(window.lab.plan), "--wave", "pilot", env=window.env)
    assert proc.returncode == 2
    assert "is switched: its runs are delta passes only" in proc.stderr and "carol" in proc.stderr


def test_without_a_primary_the_switch_prints_the_records_and_waits_for_them(
    tmp_path: Path,
    source_dovecot: DovecotServer,
    target_dovecot: DovecotServer,
    knot: KnotPair,
    slapd: SlapdServer,
) -> None:
    window = make_window_lab(tmp_path, source_dovecot, target_dovecot, knot, slapd)
    plan = window.lab.plan.read_text(encoding="utf-8")
    manual = "".join(line + "\n" for line in plan.splitlines() if not line.startswith(("primary", "tsig_")))
    window.lab.plan.write_text(manual, encoding="utf-8")
    window.record_clean_check_run()
    cmd = [*CUTOVER, "switch", "--plan", str(window.lab.plan), "--wave", "pilot"]
    with subprocess.Popen(cmd, env=window.env, cwd=window.lab.root, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:  # fmt: skip
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the records to change, as zone-file lines, then the wait
            seen.append(line)
            if line.startswith("dns: waiting for"):
                break
        text = "".join(seen)
        assert f"; remove: {ZONE}. 300 IN MX 10 mx.legacy.test." in text
        assert f"{ZONE}. 300 IN MX 10 {TARGET_MX}" in text
        # The operator makes the change by hand (here: the same signed update an operator's tool sends).
        settings = SwitchDns((DomainRecords(ZONE, f"{ZONE}.", (MxRecord(10, TARGET_MX),)),),
                             HostPort(knot.primary.address, 53), TsigSettings(TSIG_NAME, TSIG_ALGORITHM,
                             Secret(TSIG_SECRET)), timeout=3.0)  # fmt: skip
        primary = Primary.from_plan(settings)
        assert primary is not None
        apply_records(primary, records_for(settings.domains, 300))
        rest, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    assert "confirmed on 2 servers" in rest
    (switched,) = [s for s in window.store.wave_steps("pilot") if s.step == "switch:dns-update"]
    assert switched.did["manual"] is True and TARGET_MX in switched.did["instructions"]

"""``cutover switch`` past the switch, against real servers on loopback: settled (post checks, a
probe through a real MX, Exim handing over to the target Dovecot's LDA, and the late-mail loop),
closed (the wave's report in the state directory) and rolled back (slapd's routing attribute, MX on
both Knot servers, the mail that reached the target copied back to the legacy Dovecot), resumed
after ``kill -9``. Run as an operator would, in a subprocess."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dovecot_lab import append_many, make_lab
from servers import imapfill
from servers.delivery import DeliveringMX, LdaRelay
from servers.dovecot import DovecotServer
from servers.knot import TARGET_MX, ZONE, KnotPair
from servers.slapd import SlapdServer
from servers.smtp import find_exim
from test_window_switch import (  # the switch's lab: Knot, slapd and the plan's [switch]
    LEGACY_HOST,
    TARGET_HOST,
    USERS,
    WindowLab,
    knot,
    mail_host,
    mx_on,
    slapd,
    switch_toml,
)

from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.state.store import StateStore
from runners.window.conditions import ready_conditions

__all__ = ["knot", "slapd"]  # fixtures shared with test_window_switch

LEGACY_MX = ("10 mx.legacy.test.", "20 mx2.legacy.test.")
MxFactory = Callable[..., DeliveringMX]


@pytest.fixture
def mx_factory() -> Iterator[MxFactory]:
    if find_exim() is None:
        pytest.fail("exim4 is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    started: list[tuple[DeliveringMX, LdaRelay]] = []

    def start(target: DovecotServer, **options: Any) -> DeliveringMX:
        relay = LdaRelay(target)
        mx = DeliveringMX(lmtp_port=relay.port, domains=(ZONE,), **options)
        started.append((mx, relay))
        return mx.start()

    yield start
    for mx, relay in started:
        print(f"--- exim log ---\n{mx.log_text()}\n--- LDA deliveries ---\n{relay.deliveries}")
        mx.stop()
        relay.stop()


def address(user: str) -> str:
    return f"{user}@{ZONE}"


def settle_lab(
    tmp_path: Path,
    source: DovecotServer,
    dovecot_factory: Callable[..., DovecotServer],
    knot: KnotPair,
    slapd: SlapdServer,
    mx_factory: MxFactory,
    *,
    hold: bool = False,
    post_dns: str = "",
) -> tuple[WindowLab, DovecotServer]:
    """The switch's lab with the target's users named by address (the LDA delivers to the address)
    and an MX in front of the target; the pilot wave copied twice (first and delta pass)."""
    target = dovecot_factory(users={address(u): f"{u}-secret" for u in USERS})
    mx = mx_factory(target, hold=hold)
    window_keys = (f'probe_mx = "{mx.host}:{mx.port}"\nprobe_deadline_seconds = {3 if hold else 60}\n'
                   "probe_poll_seconds = 0.05\nlate_mail_quiet_minutes = 0.005\nlate_mail_interval_seconds = 0.1\n")  # fmt: skip
    tail = (
        switch_toml(knot, slapd).replace("[window]\nhours = 4\n", "[window]\nhours = 4\n" + window_keys)
        + post_dns
    )
    lab = make_lab(tmp_path / "lab", source, target, mailboxes=tuple((u, address(u), "pilot") for u in USERS),
                   tail=tail)  # fmt: skip
    (lab.root / "mailboxes.csv").write_text(
        "source,target,wave,address\n" + "".join(f"{u},{address(u)},pilot,{address(u)}\n" for u in USERS),
        encoding="utf-8",
    )
    for user in USERS:
        append_many(
            source, user, "INBOX", [f"Subject: {user} {i}\r\n\r\nbody {i}\r\n".encode() for i in range(3)]
        )
    window = WindowLab(lab, knot, slapd)
    for _ in range(2):
        code, summary = lab.run(env=window.env)
        assert code == 0, summary
    window.record_clean_check_run()
    return window, target


def inbox(server: DovecotServer, user: str) -> list[bytes]:
    return [body for body, _flags, _date in imapfill.folder_snapshot(server, user, master=True)["INBOX"]]


def step(data: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [s for s in data["steps"] if s["step"] == name]
    return found


def test_through_closed_late_mail_is_caught_and_counted_and_the_report_is_written(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: Callable[..., DovecotServer],
    knot: KnotPair, slapd: SlapdServer, mx_factory: MxFactory,
) -> None:  # fmt: skip
    window, target = settle_lab(tmp_path, source_dovecot, dovecot_factory, knot, slapd, mx_factory)
    code, switched = window.switch_json()
    assert code == 0, switched
    marks = step(switched, "switched")["did"]["marks"]
    assert marks["mailboxes"] == 2 and Path(marks["file"]).is_file()  # read before routing changed
    # Late mail: a sender with a cached MX still delivers to the legacy after the switch.
    append_many(source_dovecot, "alice", "INBOX", [b"Subject: late\r\n\r\ncached MX\r\n"])

    code, settled = window.switch_json("--step", "settle")

    assert code == 0, settled
    did = step(settled, "settled")["did"]
    assert did["probe"]["outcome"] == "arrived" and did["probe"]["removed"] is True
    assert did["probe"]["delay"] is not None
    assert did["late_messages"] == 1  # the key the cockpit reads
    assert did["late_passes"][0]["caught"] == 1 and did["late_passes"][-1]["caught"] == 0
    assert any(b"cached MX" in body for body in inbox(target, address("alice")))
    assert not any(b"X-Cutover-Probe" in body for body in inbox(target, address("alice")))  # removed again
    checked = {c["name"]: c["holds"] for c in step(settled, "settled")["checked"]}
    assert checked == {"post-checks": True, "mail-flow-probe": True}

    # Closed: the report, with a hostile reason in the record (Markdown must keep it literal).
    code, closed = window.switch_json("--step", "close", "--force", "--reason", "signed | off <b>now</b>")

    assert code == 0, closed
    did = step(closed, "closed")["did"]
    md_path, json_path = Path(did["report_files"]["markdown"]), Path(did["report_files"]["json"])
    assert md_path.parent == window.lab.root / ".cutover" / "reports"
    for path in (md_path, json_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert report == did["report"]  # --output json carries the same report
    assert {m["source"] for m in report["mailboxes"]} == set(USERS)
    assert [s["step"] for s in report["steps"]][:3] == ["ready", "final-pass", "switched"]
    assert {"settled", "closed"} <= {s["step"] for s in report["steps"]}
    markdown = md_path.read_text(encoding="utf-8")
    assert "signed \\| off &lt;b&gt;now&lt;/b&gt;" in markdown and "<b>" not in markdown
    assert window.lab.status()["window"][0]["stage"] == "closed"


def test_a_probe_that_does_not_arrive_and_a_post_check_blocker_refuse_settled(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: Callable[..., DovecotServer],
    knot: KnotPair, slapd: SlapdServer, mx_factory: MxFactory,
) -> None:  # fmt: skip
    # The post checks ask Knot for the domain's MX and expect a host the switch never set.
    post_dns = (f'\n[dns]\ndomains = ["{ZONE}"]\nresolver = "{knot.primary.address}:53"\n'
                'target_mx = ["mx.elsewhere.test"]\n')  # fmt: skip
    window, _ = settle_lab(
        tmp_path, source_dovecot, dovecot_factory, knot, slapd, mx_factory, hold=True, post_dns=post_dns
    )
    assert window.switch().returncode == 0

    code, data = window.switch_json("--step", "settle")

    assert code == 1, data
    assert [p.split(":")[0] for p in data["problems"]] == ["NO  post-checks", "NO  mail-flow-probe"]
    assert f"{ZONE} (DNS-CUT-002" in data["problems"][0]  # the checks' own finding, on the wave's domain
    assert "not arrived" in data["problems"][1]
    assert step(data, "settled")["status"] == "refused"
    assert data["stage"] == "switched"
    assert window.store.wave_steps("pilot")[-1].status == "refused"
    # The operator overrides with the wave's name and a reason: settled, and the record keeps both.
    code, data = window.switch_json(
        "--step", "settle", "--confirm", "pilot", "--reason", "MX changes tomorrow"
    )
    assert code == 0, data
    (row,) = [r for r in window.store.wave_steps("pilot") if r.step == "settled" and r.status == "done"]
    assert row.params["overridden"] is True and row.params["reason"] == "MX changes tomorrow"
    assert row.did["probe"]["outcome"] == "not arrived" and row.did["late_messages"] == 0


def test_rollback_routes_back_restores_mx_and_copies_back_the_mail_that_reached_the_target(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: Callable[..., DovecotServer],
    knot: KnotPair, slapd: SlapdServer, mx_factory: MxFactory,
) -> None:  # fmt: skip
    window, target = settle_lab(tmp_path, source_dovecot, dovecot_factory, knot, slapd, mx_factory)
    assert window.switch().returncode == 0
    assert mx_on(knot.secondary) == (f"10 {TARGET_MX}",)
    imapfill.append(target, address("bob"), "INBOX", b"Subject: after the switch\r\n\r\nto the target\r\n")
    serial = knot.primary.serial() or 0

    code, data = window.switch_json("--step", "rollback")

    assert code == 0, data
    assert data["stage"] == "rolled-back"
    assert mail_host(slapd, "alice") == mail_host(slapd, "bob") == [LEGACY_HOST]
    assert mx_on(knot.primary) == mx_on(knot.secondary) == LEGACY_MX
    assert knot.primary.serial() == serial + 1
    did = step(data, "rolled-back")["did"]
    assert did["dns"]["update"]["sent"] == [f"{ZONE}. MX"] and did["dns"]["confirmation"]["confirmed"]
    assert did["copy_back"]["copied"] == 1
    assert sum(b"to the target" in body for body in inbox(source_dovecot, "bob")) == 1
    # A rerun changes nothing and copies nothing twice.
    again = window.switch("--step", "rollback")
    assert again.returncode == 0 and "already rolled-back" in again.stdout
    assert sum(b"to the target" in body for body in inbox(source_dovecot, "bob")) == 1
    assert knot.primary.serial() == serial + 1
    assert window.switch().returncode == 1  # a rolled-back wave doesn't move forward
    assert mail_host(slapd, "bob") == [LEGACY_HOST] != [TARGET_HOST]


def test_rollback_killed_after_the_dns_update_resumes_without_a_second_update(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: Callable[..., DovecotServer],
    knot: KnotPair, slapd: SlapdServer, mx_factory: MxFactory,
) -> None:  # fmt: skip
    window, target = settle_lab(tmp_path, source_dovecot, dovecot_factory, knot, slapd, mx_factory)
    assert window.switch().returncode == 0
    imapfill.append(target, address("alice"), "INBOX", b"Subject: after\r\n\r\narrived on the target\r\n")
    serial = knot.primary.serial() or 0

    killed = window.switch(
        "--step", "rollback", env={**window.env, "CUTOVER_FAULT": "kill-rollback-dns-sent:1"}
    )

    assert killed.returncode == -9
    assert knot.primary.serial() == serial + 1  # the UPDATE went out, its outcome was never recorded
    assert window.store.steps_done("pilot")[-1] == "rollback:directory"

    code, data = window.switch_json("--step", "rollback")

    assert code == 0, data
    did = step(data, "rolled-back")["did"]
    assert did["directory"] == "done before this run (resumed)"
    assert did["dns"]["update"]["sent"] == [] and did["dns"]["update"]["already_restored"] == [f"{ZONE}. MX"]
    assert knot.primary.serial() == serial + 1  # one UPDATE only
    assert mx_on(knot.secondary) == LEGACY_MX
    assert sum(b"arrived on the target" in body for body in inbox(source_dovecot, "alice")) == 1
    assert mail_host(slapd, "alice") == [LEGACY_HOST]


def test_ready_says_before_the_switch_that_an_ews_target_cant_be_copied_back(tmp_path: Path) -> None:
    (tmp_path / "plan.toml").write_text(
        """
[source]
type = "imap"
host = "imap.old.test"
auth = "master"
master_user = "admin"
master_password = "env:SRC_PW"

[target]
type = "ews"
host = "mail.corp.example"
service_account = "svc-migrate"
password = "env:EWS_PW"

[mailboxes]
entries = [ { source = "a", target = "a@corp.example", wave = "w" } ]

[window]
hours = 4
probe_mx = "127.0.0.1:2525"
late_mail_quiet_minutes = 20
""",
        encoding="utf-8",
    )
    plan = load_plan(tmp_path / "plan.toml")
    assert (plan.window.probe_mx.host, plan.window.probe_mx.port) == ("127.0.0.1", 2525)  # type: ignore[union-attr]
    assert plan.window.late_mail_quiet_minutes == 20

    conditions = ready_conditions(plan, StateStore(tmp_path / "state.db"), "w")

    (rollback,) = [c for c in conditions if c.name == "rollback-copy-back"]
    assert not rollback.holds
    assert "'ews' can't be read as a source" in rollback.detail and "--confirm" in rollback.detail


@pytest.mark.parametrize("value", ['"mx.example:port"', '"[::1"', "25"])
def test_a_bad_probe_mx_names_the_key(tmp_path: Path, value: str) -> None:
    (tmp_path / "plan.toml").write_text(
        '[source]\ntype = "imap"\nhost = "a.test"\nauth = "master"\nmaster_user = "m"\n'
        'master_password = "env:X"\n[target]\ntype = "imap"\nhost = "b.test"\nauth = "master"\n'
        'master_user = "m"\nmaster_password = "env:Y"\n[mailboxes]\n'
        'entries = [ { source = "a", target = "a", wave = "w" } ]\n'
        f"[window]\nprobe_mx = {value}\n",
        encoding="utf-8",
    )
    with pytest.raises(PlanError) as caught:
        load_plan(tmp_path / "plan.toml")
    assert "[window.probe_mx]" in str(caught.value)

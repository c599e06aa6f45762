"""`cutover demo`: the embedded lab, end to end.

One lab per module runs the scenario in-process (readiness over all 50 mailboxes, the pilot wave,
verify --deep); the tests then look at what each step found, drive the real CLI against the
running lab, and run `cutover demo` itself as an operator would. Every server is on 127.0.0.1.
"""

from __future__ import annotations

import imaplib
import json
import os
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.process import listening_sockets

from checks.model import Finding, Severity, State
from cockpit.demo.report import demo_data
from cockpit.demo.scenario import DemoResult, run_scenario
from lab import data
from lab.embedded import Lab
from lab.platforms import legacy_wire_name
from runners.engine.sessions import open_source
from runners.engine.wave import run_wave
from runners.model import FetchedMessage, FetchFailure
from runners.plan.model import Endpoint, MailboxEntry, Secret

CUTOVER = [sys.executable, "-m", "cockpit.cli"]
HEALTHY_PILOT = ("alice.adams", "bob.brown", "carol.clark", data.CATCH_ALL)
#: Where the target keeps what the legacy platform calls Sent, Trash...: the engine maps them by
#: the target's special-use attributes.
TARGET_FOLDER = {"Sent": "Sent Items", "Trash": "Deleted Items"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoResult]:
    with Lab() as lab:
        yield run_scenario(lab, tmp_path_factory.mktemp("demo"))
    assert not lab.errors, "\n".join(lab.errors)


def cutover(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CUTOVER, *args], capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ)
    )


def findings(result: DemoResult, check_id: str, object_id: str) -> list[Finding]:
    outcome = next(o for o in result.readiness.outcomes if o.check_id == check_id)
    assert outcome.state == State.OK, f"{check_id}: {outcome.state} {outcome.reason}"
    return [f for f in outcome.findings if f.object_id == object_id]


def worst(result: DemoResult, check_id: str, object_id: str) -> Finding:
    found = findings(result, check_id, object_id)
    assert found, f"{check_id} says nothing about {object_id}"
    return max(found, key=lambda f: f.severity.rank)


# --- readiness: every seeded problem is found before anything moves -------------------------------


def test_readiness_runs_every_check_against_the_lab(demo: DemoResult) -> None:
    states = {o.check_id: (o.state, o.reason) for o in demo.readiness.outcomes}
    skipped = {c for c, (state, _) in states.items() if state == State.SKIPPED}
    # The lab has no HTTPS endpoints and no databases, and its target is IMAP, not Exchange.
    # SRC-QUOTA-011: the lab's source offers no QUOTA. The EWS and Graph targets' own checks skip an
    # IMAP target.
    ews = {f"TGT-EWS-03{n}" for n in range(1, 6)}
    graph = {"TGT-GAPP-041", "TGT-GBOX-042", "TGT-GSIZE-043", "TGT-GDNS-044"}
    assert skipped == {"TGT-HTTPS-001", "TGT-STORE-004", "DNS-AUTOD-008", "SRC-QUOTA-011"} | ews | graph, (
        states
    )
    assert not demo.readiness.incomplete, states
    # SRC-QUOTA-011, DIR-LOGIN-007 and the target category's three joined the 30; then EWS's and
    # Graph's, TGT-FLAGS-024 and SRC-FLAGS-045.
    assert len(states) == 37 + len(ews) + len(graph)


def test_source_problems_are_found(demo: DemoResult) -> None:
    locked = worst(demo, "SRC-LOGIN-002", data.address(data.LOCKED))
    assert (locked.severity, locked.title) == (Severity.BLOCKER, "Mailbox can't log in")
    assert "Authentication failed" in locked.observed

    folder = worst(demo, "SRC-LOGIN-002", f"{data.address(data.UNSELECTABLE)}/{data.UNSELECTABLE_FOLDER}")
    assert folder.severity == Severity.BLOCKER
    assert folder.evidence == data.UNSELECTABLE_WORDS  # the server's own words

    corrupt = worst(demo, "SRC-READ-004", data.address(data.CORRUPT))
    assert corrupt.severity == Severity.WARNING
    assert "INBOX UID 3 (" in corrupt.evidence and data.CORRUPT_WORDS in corrupt.evidence

    catch_all = worst(demo, "SRC-CATCH-008", data.address(data.CATCH_ALL))
    assert catch_all.severity == Severity.BLOCKER
    assert all(f"{who}@{data.DOMAIN}" in catch_all.evidence for who in data.CATCH_ALL_RECIPIENTS)
    assert worst(demo, "DIR-CATCH-005", f"@{data.DOMAIN}").severity == Severity.BLOCKER

    for local in HEALTHY_PILOT[:3]:
        assert worst(demo, "SRC-LOGIN-002", data.address(local)).severity == Severity.PASS
        assert worst(demo, "SRC-READ-004", data.address(local)).severity == Severity.PASS


def test_target_problems_are_found(demo: DemoResult) -> None:
    oversized = worst(demo, "TGT-SIZE-006", data.address(data.OVERSIZED))
    assert oversized.severity == Severity.BLOCKER
    # Both limits, the plan's and the one the target itself advertises after login.
    assert "max_message_bytes" in oversized.evidence and "APPENDLIMIT=2000000" in oversized.evidence

    hub = {f.key: f for f in findings(demo, "TGT-SMTP-002", demo.lab.services["smtp-hub"].address)}
    assert hub["size"].severity == Severity.BLOCKER and "SIZE 1000000" in hub["size"].observed
    assert hub["tls"].severity == Severity.BLOCKER and "250-SIZE 1000000" in hub["tls"].evidence


def test_target_checks_log_in_and_probe_the_canary_without_uidplus(demo: DemoResult) -> None:
    henry = data.address(data.MISSING_ON_TARGET)
    assert worst(demo, "TGT-LOGIN-021", henry).severity == Severity.BLOCKER
    assert worst(demo, "TGT-LOGIN-021", data.address("alice.adams")).severity == Severity.PASS
    (outcome,) = [o for o in demo.readiness.outcomes if o.check_id == "TGT-APPEND-023"]
    (append,) = outcome.findings
    # The lab's IMAP server has neither APPENDUID nor UID EXPUNGE: found by Message-ID, then EXPUNGE.
    assert append.severity == Severity.PASS, append
    assert "(no APPENDUID)" in append.evidence and "\nEXPUNGE: OK" in append.evidence
    # The lab's target keeps every flag and keyword (its PERMANENTFLAGS end in \\*).
    assert worst(demo, "TGT-FLAGS-024", data.address("alice.adams")).severity == Severity.PASS
    assert worst(demo, "TGT-FLAGS-024", henry).severity == Severity.INFO  # no login: not probed


def test_directory_finds_the_user_missing_on_the_target(demo: DemoResult) -> None:
    henry = data.address(data.MISSING_ON_TARGET)
    assert worst(demo, "DIR-ADDR-001", henry).severity == Severity.BLOCKER
    assert worst(demo, "DIR-MBX-002", henry).severity == Severity.BLOCKER
    assert worst(demo, "DIR-ADDR-001", data.address("alice.adams")).severity == Severity.PASS


def test_dns_finds_the_legacy_mx_and_its_ttl(demo: DemoResult) -> None:
    ttl = worst(demo, "DNS-TTL-004", data.DOMAIN)
    assert ttl.severity == Severity.WARNING and "TTL 86400 s" in ttl.observed
    phase = worst(demo, "DNS-CUT-002", data.DOMAIN)
    assert phase.title == "MX points at the legacy platform"
    assert phase.observed == ", ".join(data.LEGACY_MX)
    assert worst(demo, "DNS-NS-003", data.DOMAIN).severity == Severity.PASS


# --- the pilot: it completes, and every failure is explained ----------------------------------------


def test_pilot_completes_with_its_failures_explained(demo: DemoResult) -> None:
    mailboxes = {m["source"]: m for m in demo.status["mailboxes"]}
    assert demo.pilot.status == "partial"
    assert mailboxes[data.address(data.LOCKED)]["state"] == "failed"
    assert mailboxes[data.address(data.LOCKED)]["error_kind"] == "login"
    assert "Authentication failed" in mailboxes[data.address(data.LOCKED)]["error"]
    for local in (data.CORRUPT, data.OVERSIZED, data.UNSELECTABLE):
        assert mailboxes[data.address(local)]["state"] == "partial", local
    for local in HEALTHY_PILOT:
        assert mailboxes[data.address(local)]["state"] == "ok", local

    not_copied = {(r["mailbox"], r["folder"], r["uid"]): r for r in demo.status["not_copied"]}
    assert set(not_copied) == {
        (data.address(data.CORRUPT), "INBOX", 3),
        (data.address(data.OVERSIZED), "Sent", 3),
    }
    corrupt = not_copied[(data.address(data.CORRUPT), "INBOX", 3)]
    assert (
        corrupt["status"] == "failed"
        and corrupt["reason"] == f"source refused FETCH: NO {data.CORRUPT_WORDS}"
    )
    oversized = not_copied[(data.address(data.OVERSIZED), "Sent", 3)]
    assert (
        oversized["status"] == "skipped" and "over the target limit of 2000000 bytes" in oversized["reason"]
    )

    (folder,) = demo.status["folder_errors"]
    assert (folder["source"], folder["source_path"]) == (
        data.address(data.UNSELECTABLE),
        data.UNSELECTABLE_FOLDER,
    )
    assert folder["error"].endswith(data.UNSELECTABLE_WORDS)


def test_pilot_copies_every_message_byte_for_byte_with_flags_and_dates(demo: DemoResult) -> None:
    def target_content() -> dict[str, dict[str, list[tuple[bytes, frozenset[str], str]]]]:
        out: dict[str, dict[str, list[tuple[bytes, frozenset[str], str]]]] = {}
        for local in HEALTHY_PILOT:
            account = demo.lab.target.account(data.address(local))
            assert account is not None
            out[local] = {
                name: sorted((m.body, frozenset(m.flags), m.internaldate.isoformat()) for m in f.messages)
                for name, f in account.folders.items()
            }
        return out

    copied = demo.lab.call(target_content)  # read in the reactor thread, where the stores live
    for local in HEALTHY_PILOT:
        expected: dict[str, list[tuple[bytes, frozenset[str], str]]] = {}
        for message in demo.lab.data.mailbox(local).messages:
            folder = TARGET_FOLDER.get(message.folder, message.folder)
            expected.setdefault(folder, []).append((message.body, message.flags, message.date.isoformat()))
        for folder, messages in expected.items():
            assert copied[local][folder] == sorted(messages), f"{local} {folder}"


def test_verify_cli_explains_every_difference(demo: DemoResult) -> None:
    proc = cutover("verify", "--plan", str(demo.plan.path), "--wave", "pilot", "--deep", "--output", "json")
    report: dict[str, Any] = json.loads(proc.stdout)
    # One mailbox can't even be opened: verification is incomplete, and says why.
    assert proc.returncode == 2 and report["incomplete"], proc.stderr
    assert report["totals"]["lost"] == report["totals"]["different"] == 0
    assert report["totals"]["failed"] == report["totals"]["skipped"] == 1
    by_mailbox = {m["source"]: m for m in report["mailboxes"]}
    assert "Authentication failed" in by_mailbox[data.address(data.LOCKED)]["error"]
    projects = next(
        f
        for f in by_mailbox[data.address(data.UNSELECTABLE)]["folders"]
        if f["source"] == data.UNSELECTABLE_FOLDER
    )
    assert data.UNSELECTABLE_WORDS in projects["error"]
    differences = [d for m in report["mailboxes"] for d in m["differences"]]
    assert {d["bucket"] for d in differences} == {"failed", "skipped"}
    assert all(d["reason"] for d in differences)
    for local in HEALTHY_PILOT:
        assert by_mailbox[data.address(local)]["ok"], local

    status = cutover("status", "--plan", str(demo.plan.path), "--failures", "--output", "json")
    assert status.returncode == 1, status.stderr  # the pilot's failed and skipped messages need attention
    assert {r["reason"] for r in json.loads(status.stdout)["not_copied"]} == {
        r["reason"] for r in demo.status["not_copied"]
    }


def test_the_demo_report_says_every_problem_was_found_and_explained(demo: DemoResult) -> None:
    report = demo_data(demo, kept=False)
    assert report["ok"], [p for p in report["problems"] if not p["ok"]]
    assert {p["key"] for p in report["problems"]} == {p.key for p in data.PROBLEMS}
    assert all(f["severity"] != "pass" for f in report["readiness"]["findings"])


def test_pop3_serves_the_same_inboxes(demo: DemoResult) -> None:
    service = demo.lab.services["legacy-pop3"]
    endpoint = Endpoint(
        "pop3", host=service.host, port=service.port, security="plain", auth="master",
        master_user=data.LEGACY_MASTER[0], master_password=Secret(data.LEGACY_MASTER[1]),
    )  # fmt: skip
    for local in ("alice.adams", data.CORRUPT):
        box = demo.lab.data.mailbox(local)
        session = open_source(endpoint, MailboxEntry(box.address, box.address, "pilot"))
        try:
            (inbox,) = session.list_folders()
            _, metas = session.list_messages(inbox)
            got = list(session.fetch(inbox, metas))
        finally:
            session.close()
        for item, message in zip(got, [m for m in box.messages if m.folder == "INBOX"], strict=True):
            if message.corrupt:
                assert isinstance(item, FetchFailure) and item.reason == f"-ERR {message.corrupt}"
            else:
                assert isinstance(item, FetchedMessage) and item.body == message.body


def test_target_refuses_an_oversized_append_before_the_literal(demo: DemoResult) -> None:
    service = demo.lab.services["target-imap"]
    box = demo.lab.data.mailbox("alice.adams")
    client = imaplib.IMAP4(service.host, service.port)
    try:
        client.login(box.address, box.password)
        assert f"APPENDLIMIT={data.TARGET_LIMIT}" in client.capabilities
        typ, answer = client.append("INBOX", None, None, b"x" * (data.TARGET_LIMIT + 1))
        assert typ == "NO" and answer == [
            b"[TOOBIG] Message too large: 2000001 bytes, this server accepts at most 2000000"
        ]
        # Folder names with spaces come back quoted, so STATUS stays parsable.
        typ, status = client.status('"Sent Items"', "(MESSAGES UIDNEXT UIDVALIDITY)")
        assert typ == "OK" and status[0] is not None and status[0].startswith(b'"Sent Items" (MESSAGES 3 ')
    finally:
        client.logout()


def test_smtp_hub_delivers_to_the_target_within_its_size(demo: DemoResult) -> None:
    hub = demo.lab.services["smtp-hub"]
    irene = data.address("irene.jung")  # not in the pilot: its INBOX on the target is free to use
    # local_hostname given: smtplib would ask DNS for this host's FQDN otherwise.
    with smtplib.SMTP(hub.host, hub.port, local_hostname="tester.lab.example", timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["size"] == str(data.HUB_SIZE) and not smtp.has_extn("starttls")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # smtplib declares SIZE=<length>
            smtp.sendmail("partner@partner.example", [irene], b"x" * (data.HUB_SIZE + 1))
        assert refused.value.smtp_code == 552
        smtp.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("partner@partner.example", [f"nobody@{data.DOMAIN}"], b"Subject: lost\r\n\r\nx\r\n")
        smtp.sendmail("partner@partner.example", [irene], b"Subject: hello\r\n\r\nvia the hub\r\n")

    def inbox() -> list[bytes]:
        account = demo.lab.target.account(irene)
        assert account is not None
        return [m.body for m in account.inbox.messages]

    (delivered,) = demo.lab.call(inbox)
    assert delivered.startswith(
        b"Received: from tester.lab.example ([127.0.0.1]) by " + data.HUB_HOST.encode()
    )
    assert delivered.endswith(b"Subject: hello\r\n\r\nvia the hub\r\n")


def test_a_second_pass_copies_nothing_again(demo: DemoResult) -> None:
    """Last in the module: it adds a run to the shared state store."""

    def target_uidnexts() -> dict[str, dict[str, int]]:
        accounts = demo.lab.target.accounts.values()
        return {a.user: {name: f.uidnext for name, f in a.folders.items()} for a in accounts}

    before = demo.lab.call(target_uidnexts)
    rerun = run_wave(demo.plan, "pilot")
    totals = rerun.stats.totals()
    assert rerun.kind == "delta"
    assert totals["copied"] == 0 and totals["duplicates_avoided"] == demo.pilot.stats.totals()["copied"]
    assert demo.lab.call(target_uidnexts) == before  # not one APPEND reached the target


# --- the lab itself ---------------------------------------------------------------------------


def test_the_demo_plan_orders_its_waves_and_marks_its_pilot(demo: DemoResult) -> None:
    # The cockpit lists them in this order and launches only the pilot with a plain yes.
    assert demo.plan.waves == ("pilot", "wave1", "wave2")
    assert [w for w in demo.plan.waves if demo.plan.is_pilot(w)] == ["pilot"]


def test_lab_data_is_deterministic_and_sized_as_promised() -> None:
    first, second = data.build(), data.build()
    assert first == second
    assert len(first.mailboxes) == 50
    for box in first.mailboxes:
        assert len({m.folder for m in box.messages}) >= 2 and len(box.messages) >= 4, box.address
    assert {m.local for m in first.mailboxes if m.wave == "pilot"} == set(data.PILOT)


def test_labs_listen_on_loopback_only_on_free_ports_and_stop_cleanly() -> None:
    with Lab() as one, Lab() as two:
        listeners = {name: listening_sockets(s.port) for name, s in one.services.items() if s.scheme != "dns"}
        for lab in (one, two):
            assert {s.host for s in lab.services.values()} == {"127.0.0.1"}
        ports = [s.port for lab in (one, two) for s in lab.services.values()]
        assert len(ports) == len(set(ports))
        address = one.services["legacy-imap"]
        with socket.create_connection((address.host, address.port), timeout=5) as conn:
            assert conn.recv(100).startswith(b"* OK [CAPABILITY IMAP4rev1")
        assert legacy_wire_name("Archive/2023") == "INBOX.Archive.2023"
    # Its listening sockets are closed (by inode: a parallel test's server may take a freed port).
    assert all(listeners.values())
    for name, sockets in listeners.items():  # DNS (UDP) listens on no TCP socket
        assert not sockets & listening_sockets(one.services[name].port), name


# --- the command -------------------------------------------------------------------------------


def test_cutover_demo_headless_json() -> None:
    proc = cutover("demo", "--headless", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and not report["kept"] and not report["server_errors"]
    assert all(p["ok"] for p in report["problems"]), report["problems"]
    assert all(s["url"].split("://")[1].startswith("127.0.0.1:") for s in report["lab"].values())
    assert not Path(report["state_dir"]).exists()  # removed without --keep


def test_cutover_demo_keeps_its_state_with_keep(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    proc = cutover("demo", "--headless", "--keep", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Outcome: every seeded problem was found" in proc.stdout
    plan = tmp_path / "cutover" / "demo" / "plan.toml"
    assert f"State kept in {plan.parent}" in proc.stdout
    # The kept state store answers without the lab.
    status = cutover("status", "--plan", str(plan), "--failures", env=env)
    assert status.returncode == 1 and "2 message(s) not copied" in status.stdout, status.stdout

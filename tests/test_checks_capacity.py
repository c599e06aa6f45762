"""Target-capacity checks against real servers on loopback: Dovecot (source survey, target
APPENDLIMIT), nginx (client access endpoints) and Exim (SMTP hubs), with certificates from a
throwaway CA that are valid, about to expire, expired, misnamed or from an unknown CA.

The servers live for the whole module; each test writes its own plan and state store.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from corpus import message
from dovecot_lab import Lab, make_lab
from servers import imapfill
from servers.dovecot import DovecotServer, find_dovecot
from servers.https import NginxServer, find_nginx
from servers.smtp import EximServer, find_exim
from servers.tlsca import Leaf, ThrowawayCA

from checks.model import Finding, Severity, State
from checks.runner import CheckRun, run_checks, select
from runners.plan.loader import load_plan

USERS = {"alice": "a-pw", "bob": "b-pw", "carol": "c-pw", "dave": "d-pw"}
WAVES = (
    ("alice", "alice", "pilot"),
    ("bob", "bob", "main"),
    ("carol", "carol", "main"),
    ("dave", "dave", "late"),
)
BIG = message("scanned contract", "A" * 76 + "\n" + ("B" * 76 + "\n") * 20_000)  # ~1.5 MiB
#: Probes get a quarter of it (2 s): enough on loopback, short for the hung-server tests.
CHECK_TIMEOUT = 8


@dataclass
class Servers:
    source: DovecotServer
    target: DovecotServer
    #: A target that advertises APPENDLIMIT=1048576 after login (and enforces it via quota).
    limited: DovecotServer
    nginx: NginxServer
    hubs: dict[str, EximServer]
    ca_file: Path
    certs: dict[str, Leaf]


def _require(name: str, found: str | None) -> None:
    if found is None:
        # Missing servers must never turn these tests into silent skips.
        pytest.fail(f"{name} is not installed: run ./scripts/test (it installs everything)", pytrace=False)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    _require("dovecot", find_dovecot())
    _require("nginx", find_nginx())
    _require("exim", find_exim())
    directory = tmp_path_factory.mktemp("capacity-ca")
    ca, stranger = ThrowawayCA(directory / "ca"), ThrowawayCA(directory / "other", "unknown CA")
    certs = {
        "valid": ca.issue("valid", days=365),
        "expiring": ca.issue("expiring", days=5),
        "expired": ca.issue("expired", days=-3),
        "wrong": ca.issue("wrong", days=365, dns=("wrong.example.net",), ips=()),
        "untrusted": stranger.issue("untrusted", days=365),
    }
    started: list[DovecotServer | NginxServer | EximServer] = []
    try:
        source, target = DovecotServer(), DovecotServer()
        limited = DovecotServer(quota_max_mail_size="1M", extra_conf="imap_capability = +APPENDLIMIT=1048576")
        for server in (source, target, limited):
            for user, password in USERS.items():
                server.add_user(user, password)
            started.append(server.start())
        _fill(source)
        nginx = NginxServer(certs)
        started.append(nginx.start())
        hubs = {
            "big": EximServer(tls=certs["valid"], size_limit="50M", hostname="hub-big.cutover.test"),
            "small": EximServer(tls=certs["expiring"], size_limit="1M", hostname="hub-small.cutover.test"),
            "plain": EximServer(tls=None, size_limit="50M", hostname="hub-plain.cutover.test"),
            "untrusted": EximServer(tls=certs["untrusted"], size_limit="50M", hostname="hub-x.cutover.test"),
            "broken": EximServer(tls=certs["valid"], unreadable_key=True, hostname="hub-broken.cutover.test"),
        }
        for hub in hubs.values():
            started.append(hub.start())
        yield Servers(source, target, limited, nginx, hubs, ca.ca_file, certs)
    finally:
        for server in reversed(started):
            print(f"--- {type(server).__name__} log ({server.root}) ---\n{server.log_text()}")
            server.stop()


def _fill(source: DovecotServer) -> None:
    """alice: 4 in INBOX (one ~1.5 MiB) + 2 in Archive; bob 4; carol 1; dave 1."""
    for n in range(3):
        imapfill.append(source, "alice", "INBOX", message(f"alice {n}"))
    imapfill.append(source, "alice", "INBOX", BIG)  # UID 4
    imapfill.create_folder(source, "alice", "Archive")
    for n in range(2):
        imapfill.append(source, "alice", "Archive", message(f"archived {n}"))
    for n in range(4):
        imapfill.append(source, "bob", "INBOX", message(f"bob {n}"))
    imapfill.append(source, "carol", "INBOX", message("carol"))
    imapfill.append(source, "dave", "INBOX", message("dave"))


def make(
    tmp_path: Path,
    servers: Servers,
    capacity: str,
    *,
    target: DovecotServer | None = None,
    target_extra: str = "",
) -> Lab:
    tail = f'[capacity]\nca_file = "{servers.ca_file}"\n{capacity}\n\n[checks]\ntimeout = {CHECK_TIMEOUT}\n'
    return make_lab(
        tmp_path / "lab", servers.source, target or servers.target,
        mailboxes=WAVES, target_extra=target_extra, tail=tail,
    )  # fmt: skip


def run(lab: Lab, monkeypatch: pytest.MonkeyPatch, *ids: str) -> CheckRun:
    monkeypatch.setenv("SRC_MASTER_PW", lab.source.master_password)
    monkeypatch.setenv("DST_MASTER_PW", lab.target.master_password)
    return run_checks(load_plan(lab.plan), select(only=ids))


def findings(result: CheckRun, check_id: str) -> dict[tuple[str, str], Finding]:
    """(object id, key) → finding, for a check that must have run."""
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    assert outcome.state == State.OK, outcome.reason
    return {(f.object_id, f.key): f for f in outcome.findings}


def outcome_of(result: CheckRun, check_id: str) -> tuple[State, str]:
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    return outcome.state, outcome.reason


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A server that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for sock in [*held, listener]:
        sock.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound but not listening: connections are refused, and no one else can take it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


# --- TGT-HTTPS-001 ------------------------------------------------------------------------


def test_endpoints_pass_warn_and_block_on_their_certificates_and_answers(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = servers.nginx.url
    endpoints = {
        "ews": url("valid", "/EWS/Exchange.asmx"),
        "owa": url("valid", "/owa"),
        "autodiscover": url("expiring", "/autodiscover/autodiscover.xml"),
        "expired": url("expired", "/owa"),
        "misnamed": url("wrong", "/owa"),
        "untrusted": url("untrusted", "/owa"),
        "down": url("valid", "/down"),
        "typo": url("valid", "/EWS/Exchange.asmxx"),
    }
    table = ", ".join(f'{k} = "{v}"' for k, v in endpoints.items())
    lab = make(tmp_path, servers, f"endpoints = {{ {table} }}")

    got = {
        obj: f for (obj, _), f in findings(run(lab, monkeypatch, "TGT-HTTPS-001"), "TGT-HTTPS-001").items()
    }

    assert {k: f.severity for k, f in got.items()} == {
        "ews": Severity.PASS, "owa": Severity.PASS, "autodiscover": Severity.WARNING,
        "expired": Severity.BLOCKER, "misnamed": Severity.BLOCKER, "untrusted": Severity.BLOCKER,
        "down": Severity.BLOCKER, "typo": Severity.WARNING,
    }  # fmt: skip
    # The server's own words: status line and headers as sent, and the certificate's details.
    assert "HTTP/1.1 401 Unauthorized" in got["ews"].evidence
    assert "WWW-Authenticate: Negotiate" in got["ews"].evidence
    assert "SAN DNS:localhost, IP Address:127.0.0.1" in got["ews"].evidence
    assert "certificate valid for 365 more days" in got["ews"].observed
    assert "HTTP/1.1 200 OK" in got["owa"].evidence
    assert "expires in 5 days" in got["autodiscover"].title
    assert f"notAfter {servers.certs['expiring'].not_after:%Y-%m-%d}" in got["autodiscover"].evidence
    # Failed verification: OpenSSL's reason, and what the server presented all the same.
    assert "certificate has expired" in got["expired"].title
    assert f"notAfter {servers.certs['expired'].not_after:%Y-%m-%d}" in got["expired"].evidence
    assert "mismatch" in got["misnamed"].observed and "SAN DNS:wrong.example.net" in got["misnamed"].evidence
    assert "unable to get local issuer certificate" in got["untrusted"].observed
    assert "issuer CN=unknown CA" in got["untrusted"].evidence
    assert "HTTP/1.1 503 Service Temporarily Unavailable" in got["down"].evidence
    assert "404" in got["typo"].title


def test_unreachable_and_hung_servers_are_blockers_within_the_timeout(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch, hung_port: int, refused_port: int
) -> None:
    lab = make(
        tmp_path, servers,
        f'endpoints = {{ refused = "https://127.0.0.1:{refused_port}/owa", '
        f'hung = "https://127.0.0.1:{hung_port}/owa" }}\n'
        f'smtp_hubs = ["127.0.0.1:{refused_port}", "127.0.0.1:{hung_port}"]',
    )  # fmt: skip

    started = time.monotonic()
    result = run(lab, monkeypatch, "TGT-HTTPS-001", "TGT-SMTP-002")
    elapsed = time.monotonic() - started

    # Every probe gives up after CHECK_TIMEOUT / 4 = 2 s, in parallel: far from the 8 s deadline.
    assert elapsed < CHECK_TIMEOUT - 2, f"took {elapsed:.1f} s"
    https = findings(result, "TGT-HTTPS-001")
    assert {k: f.severity for k, f in https.items()} == {
        ("refused", ""): Severity.BLOCKER,
        ("hung", ""): Severity.BLOCKER,
    }
    assert all(f.title.endswith("not answering") for f in https.values())
    assert "no answer within 2 s" in https[("hung", "")].observed
    smtp = findings(result, "TGT-SMTP-002")
    refused, hung = (smtp[(f"127.0.0.1:{p}", "connect")] for p in (refused_port, hung_port))
    assert refused.severity == hung.severity == Severity.BLOCKER
    assert "Connection refused" in refused.observed
    assert "no answer within 2 s while waiting for the greeting" in hung.observed


# --- TGT-SMTP-002 -------------------------------------------------------------------------


def test_smtp_hubs_tls_and_size_against_the_largest_message_and_the_plan(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    hubs = servers.hubs
    listed = ", ".join(f'"{hub.address}"' for hub in hubs.values())
    lab = make(tmp_path, servers, f"smtp_hubs = [{listed}]", target_extra="max_message_bytes = 2000000")

    got = findings(run(lab, monkeypatch, "TGT-SMTP-002"), "TGT-SMTP-002")

    big, small, plain, stranger, broken = (
        hubs[name].address for name in ("big", "small", "plain", "untrusted", "broken")
    )
    assert {k: f.severity for k, f in got.items()} == {
        (big, "tls"): Severity.PASS, (big, "size"): Severity.PASS,
        (small, "tls"): Severity.WARNING, (small, "size"): Severity.BLOCKER,
        (plain, "tls"): Severity.BLOCKER, (plain, "size"): Severity.PASS,
        (stranger, "tls"): Severity.BLOCKER, (stranger, "size"): Severity.PASS,
        (broken, "tls"): Severity.BLOCKER, (broken, "size"): Severity.BLOCKER,
    }  # fmt: skip
    # Evidence is the conversation, the hub's lines verbatim.
    evidence = got[(big, "tls")].evidence
    assert f"S: 220 {hubs['big'].banner}" in evidence
    assert "S: 250-SIZE 52428800" in evidence and "C: STARTTLS" in evidence and "S: 221 " in evidence
    assert "valid for 365 more days" in got[(big, "tls")].observed
    assert "expires in 5 days" in got[(small, "tls")].title
    size = got[(small, "size")]
    assert "S: 250-SIZE 1048576" in size.evidence
    assert f"{len(BIG):,} bytes" in size.observed and "alice/INBOX" in size.observed
    assert "2,000,000 bytes" in size.observed and "max_message_bytes" in size.observed
    assert "offers no STARTTLS" in got[(plain, "tls")].title
    assert "unable to get local issuer certificate" in got[(stranger, "tls")].observed
    assert "issuer CN=unknown CA" in got[(stranger, "tls")].evidence
    assert "STARTTLS answered 454 TLS currently unavailable" in got[(broken, "tls")].title


# --- TGT-QUOTA-003, TGT-STORE-004 ----------------------------------------------------------


def test_quota_and_database_capacity_with_headroom(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = make(
        tmp_path, servers,
        "mailbox_quota_bytes = 1500000\nheadroom = 0.1\n"
        'databases = [ { name = "DB-A", storage_bytes = 1000000, mailboxes = ["a*"] },'
        ' { name = "DB-B", storage_bytes = 100000000, mailboxes = ["b*", "d*"] } ]',
    )  # fmt: skip

    result = run(lab, monkeypatch, "TGT-QUOTA-003", "TGT-STORE-004")

    quota = {obj: f for (obj, _), f in findings(result, "TGT-QUOTA-003").items()}
    assert {k: f.severity for k, f in quota.items()} == {
        "alice": Severity.BLOCKER, "bob": Severity.PASS, "carol": Severity.PASS, "dave": Severity.PASS
    }  # fmt: skip
    assert "at most 1,350,000 bytes" in quota["alice"].expected  # 10 % headroom on 1.5 MB
    store = {obj: f for (obj, _), f in findings(result, "TGT-STORE-004").items()}
    assert {k: f.severity for k, f in store.items()} == {
        "DB-A": Severity.BLOCKER, "DB-B": Severity.PASS, "(none)": Severity.WARNING
    }  # fmt: skip
    assert "alice" in store["DB-A"].evidence and "2 mailbox(es)" in store["DB-B"].evidence
    assert "carol" in store["(none)"].observed


# --- TGT-TIME-005 -------------------------------------------------------------------------


def test_migration_time_from_the_plan_throughput_and_from_a_real_run(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch, dovecot_factory: Any
) -> None:
    # pilot: 6 messages, main: 5, late: 1. At 5 messages per 0.9 h, main needs 90 % of a 1 h window.
    rate = 5 / (0.9 * 3600)
    lab = make(tmp_path, servers, f"window_hours = 1\nthroughput = {rate!r}")

    result = run(lab, monkeypatch, "TGT-TIME-005", "TGT-QUOTA-003")

    waves = {obj: f for (obj, _), f in findings(result, "TGT-TIME-005").items()}
    assert {k: f.severity for k, f in waves.items()} == {
        "pilot": Severity.BLOCKER, "main": Severity.WARNING, "late": Severity.PASS
    }  # fmt: skip
    assert "about 1.1 h" in waves["pilot"].observed and "from the plan" in waves["pilot"].evidence
    state, reason = outcome_of(result, "TGT-QUOTA-003")
    assert state == State.SKIPPED and "mailbox_quota_bytes" in reason

    # Without a plan throughput: skipped until a run has measured one, then measured.
    # A fresh target: the pilot wave really gets copied, measuring the throughput.
    measured = make(tmp_path / "measured", servers, "window_hours = 1", target=dovecot_factory(users=USERS))
    state, reason = outcome_of(run(measured, monkeypatch, "TGT-TIME-005"), "TGT-TIME-005")
    assert state == State.SKIPPED and "no earlier run" in reason
    code, summary = measured.run("pilot")
    assert code == 0 and summary["totals"]["copied"] == 6
    waves = {
        obj: f for (obj, _), f in findings(run(measured, monkeypatch, "TGT-TIME-005"), "TGT-TIME-005").items()
    }
    assert {f.severity for f in waves.values()} == {Severity.PASS}
    assert "measured: 6 messages copied" in waves["pilot"].evidence


# --- TGT-SIZE-006 -------------------------------------------------------------------------


def test_oversized_messages_against_appendlimit_and_the_plan_limit(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = make(tmp_path, servers, "", target=servers.limited)
    got = {obj: f for (obj, _), f in findings(run(lab, monkeypatch, "TGT-SIZE-006"), "TGT-SIZE-006").items()}
    assert {k: f.severity for k, f in got.items()} == {
        "alice": Severity.BLOCKER, "bob": Severity.PASS, "carol": Severity.PASS, "dave": Severity.PASS
    }  # fmt: skip
    assert f"INBOX UID 4: {len(BIG)} bytes" in got["alice"].evidence
    assert "APPENDLIMIT=1048576" in got["alice"].evidence  # the target's CAPABILITY line, verbatim

    plain = make(tmp_path / "plain", servers, "")
    state, reason = outcome_of(run(plain, monkeypatch, "TGT-SIZE-006"), "TGT-SIZE-006")
    assert state == State.SKIPPED and "APPENDLIMIT" in reason

    planned = make(tmp_path / "planned", servers, "", target_extra="max_message_bytes = 1200000")
    got = {
        obj: f for (obj, _), f in findings(run(planned, monkeypatch, "TGT-SIZE-006"), "TGT-SIZE-006").items()
    }
    assert got["alice"].severity == Severity.BLOCKER and got["bob"].severity == Severity.PASS
    assert "max_message_bytes" in got["alice"].evidence


# --- the CLI --------------------------------------------------------------------------------


def test_cutover_check_capacity_junit_exits_1_on_blockers(tmp_path: Path, servers: Servers) -> None:
    lab = make(
        tmp_path, servers,
        f'endpoints = {{ owa = "{servers.nginx.url("valid")}", old = "{servers.nginx.url("expired")}" }}\n'
        f'smtp_hubs = ["{servers.hubs["big"].address}"]\nmailbox_quota_bytes = 100000000',
    )  # fmt: skip

    proc = lab.cutover("check", "--plan", str(lab.plan), "--category", "capacity", "--output", "junit")

    assert proc.returncode == 1, proc.stderr
    assert '<failure type="blocker"' in proc.stdout
    assert "TGT-HTTPS-001 old" in proc.stdout and "certificate has expired" in proc.stdout

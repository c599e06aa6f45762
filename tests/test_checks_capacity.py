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
from servers.tlsca import Leaf, ThrowawayCA, self_signed

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
        "soon": ca.issue("soon", days=20),
        "expired": ca.issue("expired", days=-3),
        "wrong": ca.issue("wrong", days=365, dns=("wrong.example.net",), ips=()),
        "untrusted": stranger.issue("untrusted", days=365),
        # Two faults at once: each must be its own finding.
        "selfexp": self_signed(directory / "self", "selfexp", days=5),
        "wrongexp": ca.issue("wrongexp", days=5, dns=("wrong.example.net",), ips=()),
        # A name that resolves nowhere yet: reached through [capacity] addresses.
        "named": ca.issue("named", days=365, dns=("mail.cutover.test",), ips=()),
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
            "named": EximServer(tls=certs["named"], size_limit="50M", hostname="mail.cutover.test"),
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


def severities(found: dict[tuple[str, str], Finding], key: str) -> dict[str, Severity]:
    return {obj: f.severity for (obj, k), f in found.items() if k == key}


def test_endpoints_answers_and_each_certificate_fault_apart(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = servers.nginx.url
    endpoints = {
        "ews": url("valid", "/EWS/Exchange.asmx"),
        "owa": url("valid", "/owa"),
        "autodiscover": url("expiring", "/autodiscover/autodiscover.xml"),
        "soon": url("soon", "/owa"),
        "expired": url("expired", "/owa"),
        "misnamed": url("wrong", "/owa"),
        "untrusted": url("untrusted", "/owa"),
        "selfexp": url("selfexp", "/down"),
        "wrongexp": url("wrongexp", "/owa"),
        "down": url("valid", "/down"),
        "typo": url("valid", "/EWS/Exchange.asmxx"),
    }
    table = ", ".join(f'{k} = "{v}"' for k, v in endpoints.items())
    lab = make(tmp_path, servers, f"endpoints = {{ {table} }}")

    got = findings(run(lab, monkeypatch, "TGT-HTTPS-001"), "TGT-HTTPS-001")

    P, W, B = Severity.PASS, Severity.WARNING, Severity.BLOCKER
    # The answer: judged even behind a certificate that fails (selfexp's back end is down).
    assert severities(got, "") == {
        "ews": P, "owa": P, "autodiscover": P, "soon": P, "expired": P, "misnamed": P, "untrusted": P,
        "selfexp": B, "wrongexp": P, "down": B, "typo": W,
    }  # fmt: skip
    # Trust, name and expiry: three findings, one fault never hiding another. Defaults: warn
    # below 30 days, block below 7.
    assert severities(got, "cert-trust") == {**dict.fromkeys(endpoints, P), "untrusted": B, "selfexp": B}
    assert severities(got, "cert-name") == {**dict.fromkeys(endpoints, P), "misnamed": B, "wrongexp": B}
    assert severities(got, "cert-expiry") == {
        **dict.fromkeys(endpoints, P), "autodiscover": B, "soon": W, "expired": B, "selfexp": B, "wrongexp": B,
    }  # fmt: skip
    # The server's own words: status line and headers as sent, and the certificate's details.
    ews = got[("ews", "")]
    assert "HTTP/1.1 401 Unauthorized" in ews.evidence and "WWW-Authenticate: Negotiate" in ews.evidence
    assert "SAN DNS:localhost, IP Address:127.0.0.1" in got[("ews", "cert-name")].evidence
    assert "certificate valid for 365 more days" in got[("ews", "cert-expiry")].observed
    assert "HTTP/1.1 200 OK" in got[("owa", "")].evidence
    assert "expires in 5 days" in got[("autodiscover", "cert-expiry")].title
    assert "expires in 20 days" in got[("soon", "cert-expiry")].title
    assert (
        f"notAfter {servers.certs['expiring'].not_after:%Y-%m-%d}"
        in got[("autodiscover", "cert-expiry")].evidence
    )
    assert "certificate expired 3 days ago" in got[("expired", "cert-expiry")].title
    # Failed verification: OpenSSL's reason, and what the server presented all the same.
    assert "mismatch" in got[("misnamed", "cert-name")].observed
    assert "SAN DNS:wrong.example.net" in got[("misnamed", "cert-name")].evidence
    assert "unable to get local issuer certificate" in got[("untrusted", "cert-trust")].observed
    assert "issuer CN=unknown CA" in got[("untrusted", "cert-trust")].evidence
    assert "self-signed certificate" in got[("selfexp", "cert-trust")].observed
    assert "expires in 5 days" in got[("selfexp", "cert-expiry")].title
    assert "HTTP/1.1 503 Service Temporarily Unavailable" in got[("selfexp", "")].evidence
    assert "mismatch" in got[("wrongexp", "cert-name")].observed
    assert "expires in 5 days" in got[("wrongexp", "cert-expiry")].title
    assert "HTTP/1.1 503 Service Temporarily Unavailable" in got[("down", "")].evidence
    assert "404" in got[("typo", "")].title


def test_expiry_thresholds_come_from_the_plan(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = servers.nginx.url
    lab = make(
        tmp_path, servers,
        f'endpoints = {{ a = "{url("expiring")}", b = "{url("soon")}", c = "{url("expired")}" }}\n'
        "cert_warn_days = 10\ncert_block_days = 3",
    )  # fmt: skip
    got = findings(run(lab, monkeypatch, "TGT-HTTPS-001"), "TGT-HTTPS-001")
    assert severities(got, "cert-expiry") == {
        "a": Severity.WARNING,
        "b": Severity.PASS,
        "c": Severity.BLOCKER,
    }
    assert got[("a", "cert-expiry")].expected == "a certificate valid for at least 10 more days"


def test_a_name_is_checked_on_the_certificate_while_connecting_to_the_plan_address(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = {site: servers.nginx.ports[site] for site in ("named", "valid")}
    hubs = servers.hubs
    lab = make(
        tmp_path, servers,
        f'endpoints = {{ named = "https://mail.cutover.test:{port["named"]}/owa", '
        f'other = "https://MAIL.cutover.test:{port["valid"]}/owa" }}\n'
        f'smtp_hubs = ["mail.cutover.test:{hubs["named"].port}", "mail.cutover.test:{hubs["big"].port}"]\n'
        'addresses = { "mail.cutover.test" = "127.0.0.1" }',
    )  # fmt: skip

    result = run(lab, monkeypatch, "TGT-HTTPS-001", "TGT-SMTP-002")

    https = findings(result, "TGT-HTTPS-001")
    assert {k: f.severity for k, f in https.items() if k[0] == "named"} == dict.fromkeys(
        [("named", ""), ("named", "cert-trust"), ("named", "cert-name"), ("named", "cert-expiry")],
        Severity.PASS,
    )
    assert (
        "connected to 127.0.0.1 for mail.cutover.test ([capacity] addresses)" in https[("named", "")].evidence
    )
    # The other site's certificate names localhost and 127.0.0.1, not the name the clients will use.
    misnamed = https[("other", "cert-name")]
    assert misnamed.severity == Severity.BLOCKER and "mail.cutover.test" in misnamed.title
    assert "HTTP/1.1 200 OK" in https[("other", "")].evidence
    smtp = findings(result, "TGT-SMTP-002")
    named, big = (f"mail.cutover.test:{hubs[n].port}" for n in ("named", "big"))
    assert {k: f.severity for k, f in smtp.items() if k[0] == named} == dict.fromkeys(
        [
            (named, "tls"),
            (named, "cert-trust"),
            (named, "cert-name"),
            (named, "cert-expiry"),
            (named, "size"),
        ],
        Severity.PASS,
    )
    assert "connected to 127.0.0.1 for mail.cutover.test" in smtp[(named, "tls")].evidence
    assert smtp[(big, "cert-name")].severity == Severity.BLOCKER
    assert smtp[(big, "cert-trust")].severity == Severity.PASS


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
    assert {k: f.severity for k, f in https.items()} == {  # no answer, no certificate to judge
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
    listed = ", ".join(f'"{hub.address}"' for name, hub in hubs.items() if name != "named")
    lab = make(tmp_path, servers, f"smtp_hubs = [{listed}]", target_extra="max_message_bytes = 2000000")

    got = findings(run(lab, monkeypatch, "TGT-SMTP-002"), "TGT-SMTP-002")

    big, small, plain, stranger, broken = (
        hubs[name].address for name in ("big", "small", "plain", "untrusted", "broken")
    )
    P, B = Severity.PASS, Severity.BLOCKER
    cert = ("cert-trust", "cert-name", "cert-expiry")
    assert {k: f.severity for k, f in got.items()} == {
        (big, "tls"): P, **{(big, k): P for k in cert}, (big, "size"): P,
        (small, "tls"): P, (small, "cert-trust"): P, (small, "cert-name"): P, (small, "cert-expiry"): B,
        (small, "size"): B,
        (plain, "tls"): B, (plain, "size"): P,
        (stranger, "tls"): P, (stranger, "cert-trust"): B, (stranger, "cert-name"): P,
        (stranger, "cert-expiry"): P, (stranger, "size"): P,
        (broken, "tls"): B, (broken, "size"): B,
    }  # fmt: skip
    # Evidence is the conversation, the hub's lines verbatim.
    evidence = got[(big, "tls")].evidence
    assert f"S: 220 {hubs['big'].banner}" in evidence
    assert "S: 250-SIZE 52428800" in evidence and "C: STARTTLS" in evidence and "S: 221 " in evidence
    assert "valid for 365 more days" in got[(big, "cert-expiry")].observed
    assert "expires in 5 days" in got[(small, "cert-expiry")].title
    size = got[(small, "size")]
    assert "S: 250-SIZE 1048576" in size.evidence
    assert f"{len(BIG):,} bytes" in size.observed and "alice/INBOX" in size.observed
    assert "2,000,000 bytes" in size.observed and "max_message_bytes" in size.observed
    assert "offers no STARTTLS" in got[(plain, "tls")].title
    assert "unable to get local issuer certificate" in got[(stranger, "cert-trust")].observed
    assert "issuer CN=unknown CA" in got[(stranger, "cert-trust")].evidence
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
    assert (
        "TGT-HTTPS-001 old [cert-expiry]" in proc.stdout and "certificate expired 3 days ago" in proc.stdout
    )

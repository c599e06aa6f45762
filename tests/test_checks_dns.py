"""DNS checks against real authoritative servers: two NSD instances (see tests/dns_fixtures.py for
what each zone gets wrong) and an HTTPS host serving MTA-STS policies."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dns_fixtures import DnsLab, dns_lab
from planned_targets import planned
from servers.dns import find_nsd

from checks.model import Finding, Severity, State
from checks.runner import CheckRun, run_checks, select
from runners.plan.loader import load_plan

ALL = ("legacy.test", "good.test", "moved.test", "broken.test", "null.test")


@pytest.fixture(scope="module")
def lab() -> Iterator[DnsLab]:
    if find_nsd() is None:
        # A missing server must never turn the DNS tests into silent skips.
        pytest.fail("nsd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    with dns_lab() as started:
        yield started
        # pytest shows captured teardown output only when a test failed: the logs are there then.
        for server in (started.primary, started.secondary):
            print(f"--- nsd log {server.endpoint} ---\n{server.log_text()}")


def run(
    lab: DnsLab,
    tmp_path: Path,
    check_id: str,
    domains: tuple[str, ...] = ALL,
    phase: str = "pre",
    **plan: Any,
) -> CheckRun:
    return run_checks(
        load_plan(lab.write_plan(tmp_path, domains, **plan)), select(only=[check_id]), phase=phase
    )


def by_domain(result: CheckRun, severity: Severity | None = None) -> dict[str, list[Finding]]:
    """The one check's findings by domain (its state must be ok)."""
    (outcome,) = result.outcomes
    assert outcome.state == State.OK, outcome.reason
    out: dict[str, list[Finding]] = {}
    for f in outcome.findings:
        if severity is None or f.severity == severity:
            out.setdefault(f.object_id, []).append(f)
    return out


def one(result: CheckRun, domain: str, key: str = "") -> Finding:
    (found,) = [f for f in by_domain(result).get(domain, []) if f.key == key]
    return found


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- DNS-MX-001 --------------------------------------------------------------------------


def test_mx_without_a_usable_host_or_null_is_a_blocker_and_each_bad_host_a_warning(
    lab: DnsLab, tmp_path: Path
) -> None:
    result = run(lab, tmp_path, "DNS-MX-001")
    unusable = one(result, "broken.test", "mx")
    assert unusable.severity == Severity.BLOCKER
    assert f"{lab.primary.endpoint}: broken.test. 300 IN MX 10 127.0.0.1." in unusable.evidence
    assert "nohost.broken.test. A: NXDOMAIN" in unusable.evidence
    assert one(result, "broken.test", "127.0.0.1").severity == Severity.WARNING
    assert one(result, "broken.test", "nohost.broken.test").title == "MX host has no address"
    null = one(result, "null.test", "mx")
    assert (null.severity, null.title) == (
        Severity.BLOCKER,
        "Null MX: the domain declares that it accepts no mail",
    )
    alias = one(result, "legacy.test", "relay.legacy.test")
    assert (alias.severity, alias.title) == (Severity.WARNING, "MX target is a CNAME")
    assert "relay.legacy.test. 300 IN CNAME mx1.legacy.test." in alias.evidence


def test_mx_passes_when_every_host_resolves(lab: DnsLab, tmp_path: Path) -> None:
    passed = by_domain(run(lab, tmp_path, "DNS-MX-001"), Severity.PASS)
    assert sorted(passed) == ["good.test", "moved.test"]
    assert "mx1.legacy.test. 300 IN A 127.0.0.1" in passed["good.test"][0].evidence


# --- DNS-CUT-002 -------------------------------------------------------------------------


def test_mx_phase_pre_warns_about_an_early_target_mx_and_unknown_hosts(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-CUT-002")
    early = one(result, "moved.test", "early")
    assert early.severity == Severity.WARNING
    assert "MX 0 moved-test.mail.target.test." in early.evidence
    assert one(result, "legacy.test", "unknown").observed == "unclassified: relay.legacy.test"
    assert one(result, "good.test").severity == Severity.PASS


def test_mx_phase_post_blocks_a_legacy_mx_and_passes_the_target(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-CUT-002", ("good.test", "moved.test"), phase="post")
    stale = one(result, "good.test", "mx")
    assert stale.severity == Severity.BLOCKER
    assert "good.test. 300 IN MX 10 mx1.legacy.test." in stale.evidence
    assert one(result, "moved.test").severity == Severity.PASS


def test_mx_phase_is_skipped_without_the_phase_patterns(lab: DnsLab, tmp_path: Path) -> None:
    (outcome,) = run(lab, tmp_path, "DNS-CUT-002", legacy_mx=()).outcomes
    assert (outcome.state, outcome.reason) == (
        State.SKIPPED,
        "no [dns] legacy_mx patterns for the pre-cutover MX",
    )


# --- DNS-NS-003 --------------------------------------------------------------------------


def test_servers_that_disagree_are_named_with_what_each_said(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-NS-003", ("legacy.test", "good.test"))
    mx = one(result, "legacy.test", "MX")
    # Disagreeing MX sends mail to two places: a blocker before the cutover too; the SOA is a warning.
    assert mx.severity == Severity.BLOCKER
    assert "two places" in mx.remediation
    assert one(result, "legacy.test", "SOA").severity == Severity.WARNING
    assert f"{lab.secondary.endpoint} said 10 mx1.legacy.test., 20 mx2.legacy.test." in mx.observed
    assert f"{lab.secondary.endpoint}: legacy.test. 86400 IN MX 20 mx2.legacy.test." in mx.evidence
    soa = one(result, "legacy.test", "SOA")
    assert (
        f"{lab.primary.endpoint} serial 2024060102; {lab.secondary.endpoint} serial 2024060101"
        == soa.observed
    )
    assert one(result, "good.test").severity == Severity.PASS


def test_disagreement_is_a_blocker_after_the_cutover_and_ns_records_find_the_servers(
    lab: DnsLab, tmp_path: Path
) -> None:
    # No [dns] nameservers: the zone's NS records (ns1/ns2 on port 53) lead to both servers.
    result = run(lab, tmp_path, "DNS-NS-003", ("legacy.test", "good.test"), phase="post", nameservers={})
    assert one(result, "legacy.test", "MX").severity == Severity.BLOCKER
    passed = one(result, "good.test")
    assert passed.severity == Severity.PASS
    assert f"{lab.primary.endpoint}, {lab.secondary.endpoint}" in passed.observed


# --- DNS-TTL-004 -------------------------------------------------------------------------


def test_high_ttls_are_read_from_every_authoritative_answer(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-TTL-004", ("legacy.test", "good.test"))
    mx = one(result, "legacy.test", "MX")
    assert mx.severity == Severity.WARNING
    assert mx.observed == f"{lab.primary.endpoint}: TTL 86400 s; {lab.secondary.endpoint}: TTL 86400 s"
    autodiscover = one(result, "legacy.test", "autodiscover")
    assert "autodiscover.legacy.test. 3600 IN CNAME mail.legacy.test." in autodiscover.evidence
    assert one(result, "good.test").observed == "MX 300 s; autodiscover 300 s"
    (outcome,) = run(lab, tmp_path, "DNS-TTL-004", ("good.test",), phase="post").outcomes
    assert outcome.state == State.SKIPPED


# --- DNS-SPF-005 -------------------------------------------------------------------------


def test_spf_over_the_lookup_and_void_limits_or_missing_is_a_blocker(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-SPF-005")
    lookups = one(result, "legacy.test", "lookups")
    assert (lookups.severity, lookups.observed) == (Severity.BLOCKER, "12 DNS lookups")
    assert (
        '_spf3.legacy.test. 300 IN TXT "v=spf1 a:mx2.legacy.test a:mail.legacy.test ?all"' in lookups.evidence
    )
    assert one(result, "legacy.test", "include").severity == Severity.WARNING
    void = one(result, "broken.test", "void")
    assert (void.severity, void.observed) == (Severity.BLOCKER, "3 lookups return no record")
    assert one(result, "null.test", "record").severity == Severity.BLOCKER
    passed = one(result, "good.test")
    assert (passed.severity, passed.observed) == (Severity.PASS, "2 of 10 DNS lookups, 0 of 2 void")


def test_missing_spf_is_only_a_warning_without_required_includes(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-SPF-005", ("null.test", "moved.test"), spf_includes=())
    assert one(result, "null.test", "record").severity == Severity.WARNING
    assert one(result, "moved.test").severity == Severity.PASS


# --- DNS-DMARC-006 -----------------------------------------------------------------------


def test_dmarc_absent_or_invalid_is_a_warning(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-DMARC-006", ("legacy.test", "broken.test", "good.test"))
    absent = one(result, "legacy.test", "record")
    assert absent.severity == Severity.WARNING
    assert "_dmarc.legacy.test. TXT: NXDOMAIN" in absent.evidence
    invalid = one(result, "broken.test", "record")
    assert (invalid.severity, invalid.observed) == (Severity.WARNING, "no p= policy tag")
    assert '"v=DMARC1; rua=mailto:dmarc@broken.test"' in invalid.evidence
    assert one(result, "good.test").severity == Severity.PASS


def test_dmarc_falls_back_to_the_organisational_domain(lab: DnsLab, tmp_path: Path) -> None:
    # Neither subdomain publishes a record: lists.good.test gets good.test's p=reject, while
    # legacy.test has none to give.
    result = run(lab, tmp_path, "DNS-DMARC-006", ("lists.good.test", "sub.legacy.test"))
    inherited = one(result, "lists.good.test")
    assert inherited.severity == Severity.PASS
    assert inherited.title == "DMARC record valid (inherited from good.test)"
    assert inherited.observed.startswith("_dmarc.good.test: v=DMARC1; p=reject")
    assert "_dmarc.lists.good.test. TXT: NXDOMAIN" in inherited.evidence
    absent = one(result, "sub.legacy.test", "record")
    assert absent.severity == Severity.WARNING
    assert absent.observed == (
        "no v=DMARC1 TXT record at _dmarc.sub.legacy.test nor at _dmarc.legacy.test (its organisational domain)"
    )


# --- TGT-HTTPS-001 through the plan's resolver --------------------------------------------


def test_endpoint_names_are_resolved_by_the_plan_resolver(lab: DnsLab, tmp_path: Path) -> None:
    plan = lab.write_plan(tmp_path, ("good.test",))
    # The policy host's certificate names mta-sts.good.test, not owa.target.test; it expires in 7 days.
    plan.write_text(
        plan.read_text().replace(
            "[capacity]\n",
            "[capacity]\ncert_warn_days = 3\ncert_block_days = 1\nendpoints = { "
            'policy = "https://mta-sts.good.test/.well-known/mta-sts.txt", owa = "https://owa.target.test/owa" }\n',
        )
    )
    result = run_checks(load_plan(plan), select(only=["TGT-HTTPS-001"]))
    (outcome,) = result.outcomes
    assert outcome.state == State.OK, outcome.reason
    got = {(f.object_id, f.key): f for f in outcome.findings}
    assert {k: f.severity for k, f in got.items() if k[0] == "policy"} == dict.fromkeys(
        [("policy", ""), ("policy", "cert-trust"), ("policy", "cert-name"), ("policy", "cert-expiry")],
        Severity.PASS,
    )
    web = lab.policy.address
    assert f"connected to {web} for mta-sts.good.test (A at [dns] resolver {lab.primary.endpoint})" in (
        got[("policy", "")].evidence
    )
    misnamed = got[("owa", "cert-name")]
    assert misnamed.severity == Severity.BLOCKER and "owa.target.test" in misnamed.title
    assert f"connected to {web} for owa.target.test" in got[("owa", "")].evidence


# --- DNS-MTASTS-007 ----------------------------------------------------------------------


def test_enforced_policy_without_the_target_mx_is_a_blocker(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-MTASTS-007", ("legacy.test", "broken.test", "moved.test"))
    enforce = one(result, "legacy.test", "mx")
    assert enforce.severity == Severity.BLOCKER
    assert enforce.observed.endswith("; not covered: *.mail.target.test")
    assert '_mta-sts.legacy.test. 300 IN TXT "v=STSv1; id=20240101T000000"' in enforce.evidence
    assert "mode: enforce\nmx: mx1.legacy.test" in enforce.evidence  # the policy as served
    testing = one(result, "broken.test", "mx")
    assert testing.severity == Severity.WARNING
    assert one(result, "moved.test").severity == Severity.INFO


def test_policy_listing_the_target_passes(lab: DnsLab, tmp_path: Path) -> None:
    passed = one(run(lab, tmp_path, "DNS-MTASTS-007", ("good.test",)), "good.test")
    assert passed.severity == Severity.PASS
    assert "GET https://mta-sts.good.test/.well-known/mta-sts.txt" in passed.evidence


def test_policy_from_an_untrusted_certificate_is_not_usable(lab: DnsLab, tmp_path: Path) -> None:
    result = run(lab, tmp_path, "DNS-MTASTS-007", ("good.test",), trust_ca=False)
    broken = one(result, "good.test", "policy")
    assert broken.severity == Severity.WARNING
    assert "CERTIFICATE_VERIFY_FAILED" in broken.evidence


# --- DNS-AUTOD-008 -----------------------------------------------------------------------


@pytest.fixture
def exchange_planned() -> Iterator[None]:
    """Exchange targets load only once an adapter is registered for them (the Exchange issues)."""
    with planned("ews", "graph"):
        yield


def test_missing_autodiscover_warns_before_and_blocks_after_the_cutover(
    lab: DnsLab, tmp_path: Path, exchange_planned: None
) -> None:
    domains = ("broken.test", "good.test")
    pre = run(lab, tmp_path, "DNS-AUTOD-008", domains, target_type="ews")
    missing = one(pre, "broken.test", "autodiscover")
    assert missing.severity == Severity.WARNING
    assert "_autodiscover._tcp.broken.test. SRV: NXDOMAIN" in missing.evidence
    assert one(pre, "good.test").observed == "autodiscover.good.test → autodiscover.target.test."
    post = run(lab, tmp_path, "DNS-AUTOD-008", domains, phase="post", target_type="graph")
    assert one(post, "broken.test", "autodiscover").severity == Severity.BLOCKER


def test_autodiscover_is_skipped_for_an_imap_target(lab: DnsLab, tmp_path: Path) -> None:
    (outcome,) = run(lab, tmp_path, "DNS-AUTOD-008").outcomes
    assert outcome.state == State.SKIPPED


# --- dead servers ------------------------------------------------------------------------


def test_a_dead_resolver_makes_its_checks_an_error_within_the_timeout(
    lab: DnsLab, tmp_path: Path, exchange_planned: None
) -> None:
    dead = f"127.0.0.1:{closed_port()}"
    plan = load_plan(lab.write_plan(tmp_path, ("good.test",), resolver=dead, target_type="ews", timeout=2))
    started = time.monotonic()
    result = run_checks(plan, select(category="dns"))
    assert time.monotonic() - started < 2
    for outcome in result.outcomes:
        if outcome.check_id in ("DNS-NS-003", "DNS-TTL-004"):
            # They ask the configured authoritative servers only, which answer.
            assert outcome.state == State.OK, outcome.reason
            continue
        assert outcome.state == State.ERROR, outcome
        assert (
            outcome.reason.startswith(f"dns:{dead} ") and "no answer within 0.2 s (2 tries)" in outcome.reason
        )


def test_a_dead_nameserver_makes_the_authoritative_checks_an_error(lab: DnsLab, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{closed_port()}"
    servers = {"good.test": [lab.primary.endpoint, dead]}
    result = run_checks(
        load_plan(lab.write_plan(tmp_path, ("good.test",), nameservers=servers, timeout=2)),
        select(only=["DNS-NS-003", "DNS-TTL-004", "DNS-MX-001"]),
    )
    states = {o.check_id: (o.state, o.reason) for o in result.outcomes}
    assert states["DNS-MX-001"] == (State.OK, "")  # the resolver still answers
    for check_id in ("DNS-NS-003", "DNS-TTL-004"):
        state, reason = states[check_id]
        assert state == State.ERROR
        assert reason.startswith(f"dns:{dead} ") and "no answer within" in reason


# --- the CLI -----------------------------------------------------------------------------


def test_cutover_check_dns_reports_blockers_as_json_and_exits_1(lab: DnsLab, tmp_path: Path) -> None:
    plan = lab.write_plan(tmp_path, ("legacy.test", "good.test"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cockpit.cli",
            "check",
            "--plan",
            str(plan),
            "--category",
            "dns",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["complete"] is True
    states = {c["check_id"]: c["state"] for c in data["checks"]}
    assert states == {
        "DNS-AUTOD-008": "skipped",
        "DNS-CUT-002": "ok",
        "DNS-DMARC-006": "ok",
        "DNS-MTASTS-007": "ok",
        "DNS-MX-001": "ok",
        "DNS-NS-003": "ok",
        "DNS-SPF-005": "ok",
        "DNS-TTL-004": "ok",
    }
    blockers = {(f["check_id"], f["object_id"]) for f in data["findings"] if f["severity"] == "blocker"}
    assert blockers == {
        ("DNS-SPF-005", "legacy.test"), ("DNS-MTASTS-007", "legacy.test"), ("DNS-NS-003", "legacy.test"),
    }  # fmt: skip
    passed = {
        f["check_id"] for f in data["findings"] if f["severity"] == "pass" and f["object_id"] == "good.test"
    }
    assert passed == set(states) - {"DNS-AUTOD-008"}
    assert data["summary"]["blocker"] == 3

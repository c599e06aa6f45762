"""Readiness of a Graph target against the emulator (and NSD for live DNS): token and roles, each
mailbox, the largest message, and the records Microsoft expects for each domain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from corpus import message
from dns_fixtures import DnsLab, dns_lab
from graph_lab import CLIENT_ID, SECRET, address, make_graph_lab, tenant
from servers import imapfill
from servers.dns import find_nsd
from servers.dovecot import DovecotServer

from checks.model import Finding, Severity, State
from checks.runner import CheckRun, run_checks, select
from lab.graph import AppConfig, DomainConfig, GraphConfig, GraphEmulator, UserConfig
from runners.plan.loader import load_plan

#: What Microsoft lists for moved.test, and live DNS has (the zone in tests/dns_fixtures.py).
MOVED = DomainConfig(
    "moved.test",
    (
        {"recordType": "Mx", "label": "moved.test", "ttl": 3600, "isOptional": False, "supportedService": "Email",
         "mailExchange": "moved-test.mail.target.test", "preference": 0},
        {"recordType": "Txt", "label": "moved.test", "ttl": 3600, "isOptional": False, "supportedService": "Email",
         "text": "v=spf1 include:spf.target.test -all"},
        {"recordType": "CName", "label": "autodiscover.moved.test", "ttl": 3600, "isOptional": False,
         "supportedService": "Email", "canonicalName": "autodiscover.target.test"},
    ),
)  # fmt: skip
#: good.test still points its MX at the legacy servers: what the cutover must change.
GOOD = DomainConfig(
    "good.test",
    (
        {"recordType": "Mx", "label": "good.test", "ttl": 3600, "isOptional": False, "supportedService": "Email",
         "mailExchange": "good-test.mail.target.test", "preference": 0},
        {"recordType": "CName", "label": "autodiscover.good.test", "ttl": 3600, "isOptional": False,
         "supportedService": "Email", "canonicalName": "autodiscover.target.test"},
    ),
)  # fmt: skip


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsLab]:
    if find_nsd() is None:
        pytest.fail("nsd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    with dns_lab() as started:
        yield started


def run(tmp: Path, source: DovecotServer, emulator: GraphEmulator, dns: DnsLab | None = None, *ids: str,
        users: tuple[str, ...] = ("alice",), target_extra: str = "", phase: str = "pre") -> CheckRun:  # fmt: skip
    tail = "[checks]\ntimeout = 30\n"
    if dns is not None:
        tail += f'[dns]\ndomains = ["moved.test", "good.test"]\nresolver = "{dns.primary.endpoint}"\n'
    lab = make_graph_lab(tmp, source, emulator, users=users, target_extra=target_extra, tail=tail)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SRC_MASTER_PW", source.master_password)
        env.setenv("GRAPH_SECRET", SECRET)
        return run_checks(load_plan(lab.plan), select(only=ids), phase=phase)


def findings(result: CheckRun, check_id: str, severity: Severity | None = None) -> list[Finding]:
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    assert outcome.state == State.OK, outcome.reason
    return [f for f in outcome.findings if severity is None or f.severity == severity]


def test_token_roles_for_the_route(tmp_path: Path, source_dovecot: DovecotServer) -> None:
    with GraphEmulator(tenant("alice")) as emulator:
        result = run(
            tmp_path / "a",
            source_dovecot,
            emulator,
            None,
            "TGT-GAPP-041",
            target_extra='route = "import-mime"',
        )
        assert [f.severity for f in findings(result, "TGT-GAPP-041")] == [Severity.PASS]
    with GraphEmulator(tenant("alice", roles=frozenset({"Mail.ReadWrite"}))) as emulator:
        result = run(
            tmp_path / "b",
            source_dovecot,
            emulator,
            None,
            "TGT-GAPP-041",
            target_extra='route = "import-mime"',
        )
        (missing,) = findings(result, "TGT-GAPP-041", Severity.BLOCKER)
        assert missing.key == "Mail-Advanced.ReadWrite.All" and "Mail-Advanced.ReadWrite.All" in missing.title
        result = run(tmp_path / "c", source_dovecot, emulator, None, "TGT-GAPP-041")
        assert not findings(result, "TGT-GAPP-041", Severity.BLOCKER)  # auto falls back to json
        assert [f.key for f in findings(result, "TGT-GAPP-041", Severity.INFO)] == [
            "Mail-Advanced.ReadWrite.All"
        ]


def test_a_wrong_secret_is_a_blocker_without_the_secret(
    tmp_path: Path, source_dovecot: DovecotServer
) -> None:
    config = GraphConfig(
        apps=(AppConfig(CLIENT_ID, secret="another-secret-entirely"),), users=(UserConfig(address("alice")),)
    )
    with GraphEmulator(config) as emulator:
        result = run(tmp_path, source_dovecot, emulator, None, "TGT-GAPP-041")
    (blocker,) = findings(result, "TGT-GAPP-041", Severity.BLOCKER)
    assert blocker.title == "No token for the app" and "AADSTS" in blocker.observed
    assert SECRET not in blocker.evidence + blocker.observed


def test_each_mailbox_exists_and_is_in_scope(tmp_path: Path, source_dovecot: DovecotServer) -> None:
    config = tenant("alice")
    scoped = AppConfig(CLIENT_ID, secret=SECRET, roles=config.apps[0].roles,
                       mailbox_scope=frozenset({address("alice"), address("bob")}))  # fmt: skip
    users = (
        UserConfig(address("alice")),
        UserConfig(address("bob"), has_mailbox=False),
        UserConfig(address("carol")),
    )
    with GraphEmulator(GraphConfig(apps=(scoped,), users=users)) as emulator:
        result = run(
            tmp_path, source_dovecot, emulator, None, "TGT-GBOX-042", users=("alice", "bob", "carol")
        )
    by_box = {f.object_id: f for f in findings(result, "TGT-GBOX-042")}
    assert by_box[address("alice")].severity == Severity.PASS
    assert (
        by_box[address("bob")].severity == Severity.BLOCKER
        and by_box[address("bob")].title == "No such user or no mailbox"
    )
    assert by_box[address("carol")].severity == Severity.BLOCKER
    assert by_box[address("carol")].title == "The app may not reach this mailbox"


def test_largest_message_against_the_mailbox_limit(tmp_path: Path, source_dovecot: DovecotServer) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("big", "x" * 300_000))
    imapfill.append(source_dovecot, "bob", "INBOX", message("small"))
    with GraphEmulator(tenant("alice", "bob")) as emulator:
        result = run(tmp_path, source_dovecot, emulator, None, "TGT-GSIZE-043", users=("alice", "bob"),
                     target_extra="max_message_bytes = 100000")  # fmt: skip
    by_box = {f.object_id: f.severity for f in findings(result, "TGT-GSIZE-043")}
    assert by_box == {address("alice"): Severity.BLOCKER, address("bob"): Severity.PASS}


def test_microsofts_records_against_live_dns(
    tmp_path: Path, source_dovecot: DovecotServer, dns: DnsLab
) -> None:
    with GraphEmulator(tenant("alice", domains=(MOVED, GOOD))) as emulator:
        pre = run(tmp_path / "pre", source_dovecot, emulator, dns, "TGT-GDNS-044")
        post = run(tmp_path / "post", source_dovecot, emulator, dns, "TGT-GDNS-044", phase="post")
    moved = [f for f in findings(pre, "TGT-GDNS-044") if f.object_id == "moved.test"]
    assert sorted(f.key for f in moved) == [
        "CName:autodiscover.moved.test",
        "Mx:moved.test",
        "Txt:moved.test",
    ]
    assert {f.severity for f in moved} == {Severity.PASS}
    (mx,) = [f for f in findings(pre, "TGT-GDNS-044", Severity.WARNING) if f.object_id == "good.test"]
    assert (
        mx.key == "Mx:good.test"
        and mx.observed == "mx1.legacy.test"
        and mx.expected == "good-test.mail.target.test"
    )
    assert [f.key for f in findings(post, "TGT-GDNS-044", Severity.BLOCKER)] == ["Mx:good.test"]


def test_graph_checks_skip_for_another_target(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    from dovecot_lab import make_lab

    lab = make_lab(tmp_path, source_dovecot, target_dovecot)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SRC_MASTER_PW", source_dovecot.master_password)
        env.setenv("DST_MASTER_PW", target_dovecot.master_password)
        result = run_checks(
            load_plan(lab.plan), select(only=("TGT-GAPP-041", "TGT-GBOX-042", "TGT-GSIZE-043"))
        )
    assert {o.state for o in result.outcomes} == {State.SKIPPED}

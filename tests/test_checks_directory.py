"""Directory checks against a real OpenLDAP slapd seeded with deliberate problems (servers/slapd.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from dovecot_lab import CUTOVER
from servers.slapd import (
    BULK,
    LEGACY_CLEAN,
    LEGACY_IPLANET,
    LEGACY_PEOPLE,
    LEGACY_QMAIL,
    LIMITED_DN,
    READER_DN,
    READER_PASSWORD,
    SIZE_LIMIT,
    TARGET_CLEAN,
    TARGET_CORP,
    SlapdServer,
    find_slapd,
    lab_ldif,
)

from checks import ldapdir
from checks.families.directory_people import is_catch_all, mailbox_of, normalize, split_proxy, status_of
from checks.families.directory_rules import address_problems, proxy_problems, upn_problems
from checks.model import Finding, Severity, State
from checks.runner import CheckRun, run_checks, select
from runners.errors import CommandError
from runners.plan.loader import load_plan
from runners.plan.readiness_parts import DirectorySettings
from runners.plan.secret import Secret

CHECKS = ("DIR-ADDR-001", "DIR-MBX-002", "DIR-DUP-003", "DIR-FMT-004", "DIR-CATCH-005", "DIR-STATUS-006")
PEOPLE_ATTRS = '{ status = "inetUserStatus", mailbox = "mailDeliveryOption" }'
MAILBOXES = (
    ("alice", "alice@legacy.test"),
    ("bob", "bob@legacy.test"),
    ("heidi", "heidi@legacy.test"),
    ("zed", "zed@legacy.test"),  # in the plan only: on neither directory
)


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    if find_slapd() is None:
        # A missing server must never turn these tests into silent skips.
        pytest.fail("slapd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    server = SlapdServer(lab_ldif()).start()
    yield server
    print(f"--- slapd log ({server.root}) ---\n{server.log_text()[-20000:]}")
    server.stop()


@pytest.fixture(autouse=True)
def _ldap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LDAP_PW", READER_PASSWORD)


def directory_table(
    side: str, url: str, base: str, preset: str, *, timeout: float = 5, extra: str = ""
) -> str:
    return f"""
[directory.{side}]
url = "{url}"
base = "{base}"
preset = "{preset}"
bind_dn = "{READER_DN}"
bind_password = "env:LDAP_PW"
timeout = {timeout}
{extra}
"""


def write_plan(
    root: Path,
    *directories: str,
    mailboxes: tuple[tuple[str, str], ...] = MAILBOXES,
    tail: str = "",
) -> Path:
    """A plan whose IMAP sides point at a closed loopback port: directory checks never use them."""
    root.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{s},{t},pilot\n" for s, t in mailboxes)
    (root / "mailboxes.csv").write_text("source,target,wave\n" + rows, encoding="utf-8")
    imap = 'type = "imap"\nhost = "127.0.0.1"\nport = 9\nsecurity = "plain"\nauth = "master"\n'
    imap += 'master_user = "admin"\nmaster_password = "unused"\n'
    plan = root / "plan.toml"
    body = f'[source]\n{imap}\n[target]\n{imap}\n[mailboxes]\ncsv = "mailboxes.csv"\n'
    plan.write_text(body + "".join(directories) + tail, encoding="utf-8")
    return plan


def lab_plan(root: Path, slapd: SlapdServer, **options: str) -> Path:
    """The seeded pair: source ou=people (inetLocalMailRecipient + overrides), target ou=corp (AD)."""
    return write_plan(
        root,
        directory_table("source", slapd.url, LEGACY_PEOPLE, "inetlocalmailrecipient",
                        extra=f"attributes = {PEOPLE_ATTRS}"),
        directory_table("target", slapd.url, TARGET_CORP, "ad"),
        **options,
    )  # fmt: skip


def run(plan: Path, *ids: str) -> CheckRun:
    return run_checks(load_plan(plan), select(only=ids or CHECKS))


def findings(result: CheckRun, check_id: str, severity: Severity | None = None) -> list[Finding]:
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    assert outcome.state == State.OK, outcome.reason
    return [f for f in outcome.findings if severity is None or f.severity == severity]


def by_object(found: list[Finding]) -> dict[str, Finding]:
    return {f.object_id: f for f in found}


@pytest.fixture(scope="module")
def lab_run(slapd: SlapdServer, tmp_path_factory: pytest.TempPathFactory) -> CheckRun:
    """All six checks once over the seeded pair (the tests below read their findings)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LDAP_PW", READER_PASSWORD)
        return run(lab_plan(tmp_path_factory.mktemp("lab"), slapd))


# --- each check fires on its seeded problem --------------------------------------------------


def test_every_active_source_address_must_exist_on_the_target(lab_run: CheckRun) -> None:
    blockers = by_object(findings(lab_run, "DIR-ADDR-001", Severity.BLOCKER))
    # alice's alias, and bob (no target object at all) with his alias.
    assert sorted(blockers) == ["a@legacy.test", "bob@legacy.test", "robert@legacy.test"]
    alias = blockers["a@legacy.test"]
    assert alias.object_type == "address" and "(alice)" in alias.observed
    assert "dn: uid=alice,ou=people,dc=legacy,dc=test" in alias.evidence
    assert "mailLocalAddress: a@legacy.test" in alias.evidence
    assert "smtp:a@legacy.test" in alias.remediation
    passes = by_object(findings(lab_run, "DIR-ADDR-001", Severity.PASS))
    assert (
        passes["alice.smith@legacy.test"].observed == "owned by cn=alice,ou=users,ou=corp,dc=target,dc=test"
    )
    assert "grace@legacy.test" in passes  # forward-only, still active: her address must stay reachable
    assert sum(o.startswith("user") for o in passes) == BULK  # every page of the export was read
    # Disabled accounts and catch-alls belong to other checks.
    assert not {"frank@legacy.test", "@legacy.test", "*@branch.test"} & (set(passes) | set(blockers))


def test_every_active_mailbox_needs_a_target_object(lab_run: CheckRun) -> None:
    # The lab's target is IMAP: the AD-like directory's Exchange markers don't apply (see
    # test_checks_markers.py for an Exchange target), so an object holding the address is enough.
    found = findings(lab_run, "DIR-MBX-002")
    assert len({f.object_id for f in found}) == len(found)  # bob and heidi are in the plan too: once
    blockers = by_object([f for f in found if f.severity == Severity.BLOCKER])
    assert sorted(blockers) == ["bob@legacy.test", "zed@legacy.test"]
    assert blockers["bob@legacy.test"].title == "No target object for a mailbox to migrate"
    assert "plan mailbox zed" in blockers["zed@legacy.test"].observed
    assert "mailboxes.csv:5: zed -> zed@legacy.test (wave pilot)" in blockers["zed@legacy.test"].evidence
    passes = by_object([f for f in found if f.severity == Severity.PASS])
    assert "alice@legacy.test" in passes and "grace@legacy.test" not in passes  # forward-only: no mailbox
    assert passes["heidi@legacy.test"].title == "Target object exists"
    assert len(passes) == BULK + 7  # alice carol postmaster judy erin ivan heidi


def test_an_address_owned_twice_blocks_on_the_target_and_warns_on_the_source(lab_run: CheckRun) -> None:
    problems = [f for f in findings(lab_run, "DIR-DUP-003") if f.severity != Severity.PASS]
    assert [(f.severity, f.object_id, f.key) for f in problems] == [
        (Severity.BLOCKER, "sales@legacy.test", "target"),
        (Severity.WARNING, "info@legacy.test", "source"),
    ]
    sales = problems[0]
    assert "cn=erin,ou=users" in sales.observed and "cn=sales,ou=groups" in sales.observed
    assert "proxyAddresses: smtp:Sales@Legacy.test" in sales.evidence  # the value as stored
    assert "uid=carol" in problems[1].evidence and "uid=alice" in problems[1].evidence


def test_target_address_formats_follow_the_idfix_rules(lab_run: CheckRun) -> None:
    blockers = findings(lab_run, "DIR-FMT-004", Severity.BLOCKER)
    got = {(f.object_id.split(",")[0], f.key): f for f in blockers}
    assert sorted(got) == [
        ("cn=ivan", "proxyAddresses=smtp:ivan"),
        ("cn=ivan", "userPrincipalName=ivan petrov@legacy.test"),
        ("cn=kim", f"userPrincipalName={'k' * 70}@legacy.test"),
    ]
    assert "contains whitespace" in got["cn=ivan", "userPrincipalName=ivan petrov@legacy.test"].observed
    assert "no @ and domain" in got["cn=ivan", "proxyAddresses=smtp:ivan"].observed
    assert "70 characters before the @" in got["cn=kim", f"userPrincipalName={'k' * 70}@legacy.test"].observed
    assert all(f.object_type == "entry" and f.evidence.startswith("dn: cn=") for f in blockers)
    passes = findings(lab_run, "DIR-FMT-004", Severity.PASS)
    assert len(passes) == BULK + 10 - 2  # nine users and the sales group, but not ivan and kim


def test_catch_all_addresses_block_until_a_design_is_recorded(lab_run: CheckRun) -> None:
    blockers = by_object(findings(lab_run, "DIR-CATCH-005", Severity.BLOCKER))
    assert sorted(blockers) == ["*@branch.test", "@legacy.test"]
    assert "uid=postmaster" in blockers["@legacy.test"].evidence
    assert "[[waivers]]" in blockers["@legacy.test"].remediation
    assert "Directory-Based Edge Blocking" in blockers["@legacy.test"].remediation
    assert findings(lab_run, "DIR-CATCH-005", Severity.PASS) == []  # both source domains have one


def test_disabled_and_forward_only_accounts_and_counts_per_domain(lab_run: CheckRun) -> None:
    found = findings(lab_run, "DIR-STATUS-006")
    problems = {(f.severity, f.object_type, f.object_id) for f in found if f.key != "counts"}
    problems -= {(Severity.PASS, f.object_type, f.object_id) for f in found}
    assert problems == {
        (Severity.INFO, "mailbox", "frank@legacy.test"),
        (Severity.WARNING, "mailbox", "grace@legacy.test"),
    }
    grace = next(f for f in found if f.object_id == "grace@legacy.test")
    assert "grace@elsewhere.example" in grace.observed and "mailDeliveryOption: forward" in grace.evidence
    counts = {f.object_id: f.observed for f in found if f.key == "counts"}
    assert all(f.severity == Severity.INFO for f in found if f.key == "counts")
    assert counts["legacy.test"].startswith(f"source: {BULK + 7} active, 1 forward-only, 1 disabled")
    assert "3 missing on the target" in counts["legacy.test"]
    assert set(counts) == {"legacy.test", "branch.test"}


def test_a_waiver_records_the_catch_all_design(slapd: SlapdServer, tmp_path: Path) -> None:
    expires = (date.today() + timedelta(days=30)).isoformat()
    waiver = f"""
[[waivers]]
check = "DIR-CATCH-005"
object = "@legacy.test"
reason = "InternalRelay + redirect rule to the helpdesk mailbox (CAB-42)"
expires = {expires}
approved_by = "j.doe"
"""
    result = run(lab_plan(tmp_path, slapd, tail=waiver), "DIR-CATCH-005")
    (waived,) = [f for f in result.findings if f.waiver]
    assert waived.object_id == "@legacy.test" and "CAB-42" in waived.waiver
    assert [f.object_id for f in result.blockers] == ["*@branch.test"]


# --- clean data, other schemas -----------------------------------------------------------------


def test_clean_directories_pass_every_check(slapd: SlapdServer, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        directory_table("source", slapd.url, LEGACY_CLEAN, "inetlocalmailrecipient"),
        directory_table("target", slapd.url, TARGET_CLEAN, "ad"),
        mailboxes=(("c1", "c1@clean.test"),),
    )
    result = run(plan)
    assert all(o.state == State.OK for o in result.outcomes), [o.reason for o in result.outcomes]
    assert {f.severity for f in result.findings if f.key != "counts"} == {Severity.PASS}
    assert len(findings(result, "DIR-ADDR-001")) == 6  # three people, two addresses each
    assert len(findings(result, "DIR-MBX-002")) == 3
    assert len(findings(result, "DIR-DUP-003")) == 12  # six addresses on each side
    assert [f.object_id for f in findings(result, "DIR-CATCH-005")] == ["clean.test"]


@pytest.mark.parametrize(
    ("base", "preset", "alias", "disabled", "forward_only", "catch_all"),
    [
        (
            LEGACY_IPLANET,
            "iplanet",
            "ip1.alt@legacy.test",
            "ip3@legacy.test",
            "ip2@legacy.test",
            ["@iplanet.test"],
        ),
        (LEGACY_QMAIL, "qmail", "q1.alt@legacy.test", "q2@legacy.test", "q3@legacy.test", []),
    ],
)
def test_iplanet_and_qmail_presets_read_status_delivery_and_aliases(
    slapd: SlapdServer, tmp_path: Path, base: str, preset: str, alias: str, disabled: str,
    forward_only: str, catch_all: list[str],
) -> None:  # fmt: skip
    plan = write_plan(tmp_path, directory_table("source", slapd.url, base, preset))
    result = run(plan, "DIR-STATUS-006", "DIR-CATCH-005", "DIR-DUP-003")
    status = {f.object_id: f.severity for f in findings(result, "DIR-STATUS-006") if f.key != "counts"}
    assert status.pop(disabled) == Severity.INFO
    assert status.pop(forward_only) == Severity.WARNING
    assert set(status.values()) == {Severity.PASS}
    catches = findings(result, "DIR-CATCH-005", Severity.BLOCKER)
    assert [f.object_id for f in catches] == catch_all
    # The alias role was read; a source alone is enough for the duplicate check.
    assert alias in {f.object_id for f in findings(result, "DIR-DUP-003", Severity.PASS)}


def test_without_directory_sections_the_checks_are_skipped(tmp_path: Path) -> None:
    result = run(write_plan(tmp_path))
    assert {o.state for o in result.outcomes} == {State.SKIPPED}
    assert all("[directory." in o.reason for o in result.outcomes)


# --- paging, failures, TLS ------------------------------------------------------------------


def settings(url: str, base: str, **overrides: object) -> DirectorySettings:
    values: dict[str, object] = {"bind_dn": READER_DN, "bind_password": Secret("env:LDAP_PW"), "timeout": 5.0}
    values.update(overrides)
    return DirectorySettings(url=url, base=base, **values)  # type: ignore[arg-type]


def test_the_export_pages_past_the_size_limit_and_never_accepts_a_truncated_answer(
    slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = ldapdir.search(settings(slapd.url, LEGACY_PEOPLE), "(mail=*)", ["mail"])
    assert len(entries) == BULK + 10 > SIZE_LIMIT
    assert len({e.dn for e in entries}) == len(entries)
    # The limited account may not page past 500: that must be an error, never 500 silent entries.
    monkeypatch.setenv("LDAP_PW", "limited-secret")
    limited = settings(slapd.url, LEGACY_PEOPLE, bind_dn=LIMITED_DN)
    with pytest.raises(CommandError) as caught:
        ldapdir.search(limited, "(mail=*)", ["mail"])
    assert "sizeLimitExceeded (4)" in str(caught.value)


def test_a_wrong_bind_password_errors_with_the_servers_words_and_never_shows_it(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wrong-Pa55word-9c1e"
    monkeypatch.setenv("LDAP_PW", wrong)
    result = run(lab_plan(tmp_path, slapd))
    assert {o.state for o in result.outcomes} == {State.ERROR}
    for outcome in result.outcomes:
        assert "invalidCredentials (49)" in outcome.reason, outcome.reason
        assert f"bind as {READER_DN}" in outcome.reason
    assert wrong not in repr(result)


def test_a_dead_ldap_server_errors_within_the_timeout(slapd: SlapdServer, tmp_path: Path) -> None:
    # A port that accepts TCP (the kernel's backlog) and never answers, and one that refuses.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        for sock, words in ((silent, "no answer within 1 s"), (closed, "Connection refused")):
            url = f"ldap://127.0.0.1:{sock.getsockname()[1]}"
            plan = write_plan(
                tmp_path / words[:2], directory_table("target", url, TARGET_CORP, "ad", timeout=1)
            )
            started = time.monotonic()
            result = run(plan, "DIR-FMT-004", "DIR-DUP-003")
            assert time.monotonic() - started < 5
            for outcome in result.outcomes:
                assert outcome.state == State.ERROR and words in outcome.reason, outcome.reason
    finally:
        silent.close()
        closed.close()


def test_starttls_and_ldaps_verify_the_certificate(slapd: SlapdServer, tmp_path: Path) -> None:
    assert slapd.ca_file is not None
    cases = [
        (slapd.url, f'starttls = true\nca_file = "{slapd.ca_file}"', State.OK),
        (slapd.ldaps_url, f'ca_file = "{slapd.ca_file}"', State.OK),
        (slapd.ldaps_url, "", State.ERROR),  # the system CAs don't know the test CA
        (slapd.url, "starttls = true", State.ERROR),
        (slapd.ldaps_url, "tls_verify = false", State.OK),
    ]
    for index, (url, extra, state) in enumerate(cases):
        plan = write_plan(
            tmp_path / str(index), directory_table("target", url, TARGET_CLEAN, "ad", extra=extra)
        )
        (outcome,) = run(plan, "DIR-FMT-004").outcomes
        assert outcome.state == state, (url, extra, outcome.reason)
        if state == State.ERROR:
            assert "certificate verify failed" in outcome.reason.lower(), outcome.reason


# --- the command line -----------------------------------------------------------------------


def test_cutover_check_directory_exits_1_with_the_blockers_in_json(
    slapd: SlapdServer, tmp_path: Path
) -> None:
    plan = lab_plan(tmp_path, slapd)
    env = dict(os.environ, LDAP_PW=READER_PASSWORD)
    proc = subprocess.run(
        [*CUTOVER, "check", "--plan", str(plan), "--category", "directory", "--output", "json"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["complete"] and data["summary"]["checks_error"] == 0
    assert sorted(c["check_id"] for c in data["checks"]) == sorted((*CHECKS, "DIR-LOGIN-007"))
    blockers = {(f["check_id"], f["object_id"]) for f in data["findings"] if f["severity"] == "blocker"}
    assert {
        ("DIR-ADDR-001", "a@legacy.test"),
        ("DIR-MBX-002", "bob@legacy.test"),
        ("DIR-DUP-003", "sales@legacy.test"),
        ("DIR-FMT-004", "cn=ivan,ou=users,ou=corp,dc=target,dc=test"),
        ("DIR-CATCH-005", "@legacy.test"),
    } <= blockers
    # heidi: the IMAP target needs no Exchange markers; zed: DIR-LOGIN-007, a login no directory knows
    assert data["summary"]["blocker"] == 11 and data["summary"]["warning"] == 3
    assert READER_PASSWORD not in proc.stdout + proc.stderr


# --- rules and normalising, without a server ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("alice@example.com", None),
        ("alice@example", "has no dot"),
        ("al ice@example.com", "whitespace"),
        ("alice@corp.local", ".local is not routable"),
        ("alice(x)@example.com", "characters not allowed: ( )"),
        ("alice..x@example.com", "two in a row"),
        ("@example.com", "empty local part"),
        ("alice@bad_domain.com", "invalid label"),
    ],
)
def test_address_rules(value: str, problem: str | None) -> None:
    found = address_problems(value)
    assert (not found) if problem is None else any(problem in p for p in found), found


def test_upn_and_proxy_rules() -> None:
    assert upn_problems("a@example.com") == []
    assert any("at most 113" in p for p in upn_problems("a" * 60 + "@" + "d" * 50 + ".example.com"))
    assert any("after the @" in p for p in upn_problems("a@" + "d" * 50 + ".com"))
    assert any("not allowed: +" in p for p in upn_problems("a+b@example.com"))
    assert any("non-ASCII" in p for p in upn_problems("jürgen@example.com"))
    assert proxy_problems("SMTP:a@example.com") == [] and proxy_problems("X500:/o=Org Name/cn=a") == []
    assert proxy_problems("a@example.com") == ["no address type prefix (SMTP:, smtp:, X500:)"]
    assert any("at most 256" in p for p in proxy_problems("smtp:" + "a" * 250 + "@example.com"))


def test_normalising_addresses_status_and_delivery() -> None:
    assert split_proxy("SMTP:A@B.test") == ("SMTP", "A@B.test")
    assert split_proxy("x500:/o=x") == (None, "/o=x")
    assert split_proxy("plain@b.test") == ("", "plain@b.test")
    assert normalize("Jörg@Bücher.Example") == "jörg@xn--bcher-kva.example"
    assert is_catch_all("@a.test") and is_catch_all("*@a.test") and not is_catch_all("a@a.test")
    assert status_of(["514"]) == "disabled" and status_of(["512"]) == "active"
    assert status_of(["noaccess"]) == "disabled" and status_of([]) == "active"
    assert mailbox_of(["forward"], "iplanet") is False and mailbox_of(["forward", "mailbox"], "iplanet")
    assert mailbox_of(["noforward"], "qmail") and not mailbox_of(["nolocal"], "qmail")
    assert mailbox_of([], "qmail") and not mailbox_of([], "ad")


def test_filter_values_are_escaped_and_attribute_names_checked() -> None:
    assert ldapdir.equals("mail", "*)(uid=*") == r"(mail=\2a\29\28uid=\2a)"
    assert ldapdir.all_of([ldapdir.any_of([ldapdir.present("mail")]), "department=42"]) == (
        "(&(mail=*)(department=42))"
    )
    with pytest.raises(ValueError, match="not an LDAP attribute name"):
        ldapdir.present("mail)(x")

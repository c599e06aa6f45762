"""DIR-MBX-002's "mailbox-enabled" fits the target: Exchange's directory markers only for an Exchange
target, against a real slapd holding an AD-like target tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_fixtures import GRAPH_APP
from dovecot_lab import rewrite_table
from servers.slapd import (
    LEGACY_PEOPLE,
    READER_DN,
    READER_PASSWORD,
    TARGET_CORP,
    SlapdServer,
    find_slapd,
    ldif_entry,
    legacy_person,
    target_user,
)

from checks.model import Finding, Severity, State
from checks.runner import run_checks, select
from runners.plan.loader import load_plan

#: ``mbx`` has Exchange's mailbox attributes on the target, ``plain`` is a user with addresses only
#: (what an AD that serves a non-Exchange platform holds).
PEOPLE = ("mbx", "plain")


def ldif() -> str:
    out = [
        ldif_entry(dn, {"objectClass": ["organizationalUnit"], "ou": [dn.split(",")[0][3:]]})
        for dn in (LEGACY_PEOPLE, TARGET_CORP)
    ]
    for name in PEOPLE:
        out.append(legacy_person(LEGACY_PEOPLE, name, f"{name}@legacy.test"))
        out.append(target_user(TARGET_CORP, name, f"{name}@legacy.test", mailbox=name == "mbx"))
    return "".join(out)


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    if find_slapd() is None:
        pytest.fail("slapd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    server = SlapdServer(ldif()).start()
    yield server
    server.stop()


def write_plan(root: Path, slapd: SlapdServer, target_directory_extra: str = "") -> Path:
    """IMAP sides on a closed loopback port (directory checks never use them), both directories."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mailboxes.csv").write_text(
        "source,target,wave\n" + "".join(f"{n},{n}@legacy.test,w\n" for n in PEOPLE), encoding="utf-8"
    )
    imap = 'type = "imap"\nhost = "127.0.0.1"\nport = 9\nsecurity = "plain"\nauth = "master"\n'
    imap += 'master_user = "admin"\nmaster_password = "unused"\n'
    directories = "".join(
        f'\n[directory.{side}]\nurl = "{slapd.url}"\nbase = "{base}"\npreset = "{preset}"\n'
        f'bind_dn = "{READER_DN}"\nbind_password = "env:LDAP_PW"\ntimeout = 5\n{extra}\n'
        for side, base, preset, extra in (
            ("source", LEGACY_PEOPLE, "inetlocalmailrecipient", ""),
            ("target", TARGET_CORP, "ad", target_directory_extra),
        )
    )
    plan = root / "plan.toml"
    plan.write_text(
        f'[source]\n{imap}\n[target]\n{imap}\n[mailboxes]\ncsv = "mailboxes.csv"\n{directories}',
        encoding="utf-8",
    )
    return plan


def mailbox_findings(plan: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Finding]:
    monkeypatch.setenv("LDAP_PW", READER_PASSWORD)
    (outcome,) = run_checks(load_plan(plan), select(only=["DIR-MBX-002"])).outcomes
    assert outcome.state == State.OK, outcome.reason
    found = {f.object_id: f for f in outcome.findings}
    assert len(found) == len(outcome.findings)  # one finding per mailbox
    return found


def test_an_imap_target_with_an_ad_like_directory_needs_no_exchange_markers(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = mailbox_findings(write_plan(tmp_path, slapd), monkeypatch)
    assert {f.severity for f in found.values()} == {Severity.PASS}  # no blocker per user
    plain = found["plain@legacy.test"]
    assert plain.title == "Target object exists"
    assert "not Exchange" in plain.observed and "cn=plain,ou=corp" in plain.observed


def test_an_exchange_target_still_needs_the_mailbox_attributes(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = write_plan(tmp_path, slapd)
    rewrite_table(plan, "target", lambda _: f'[target]\ntype = "graph"\n{GRAPH_APP}\n\n')
    found = mailbox_findings(plan, monkeypatch)
    plain = found["plain@legacy.test"]
    assert plain.severity == Severity.BLOCKER and plain.title == "Target object is not mailbox-enabled"
    assert "msExchMailboxGuid/homeMDB" in plain.observed
    assert found["mbx@legacy.test"].severity == Severity.PASS
    assert found["mbx@legacy.test"].title == "Mailbox-enabled target object"


def test_a_marker_named_in_the_plan_counts_for_any_target(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = write_plan(tmp_path, slapd, 'attributes = { mailbox = "homeMDB" }')
    found = mailbox_findings(plan, monkeypatch)
    assert found["plain@legacy.test"].severity == Severity.BLOCKER
    assert "has no homeMDB" in found["plain@legacy.test"].observed
    assert found["mbx@legacy.test"].severity == Severity.PASS

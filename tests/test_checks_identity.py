"""Logins that aren't addresses (``jsmith`` is ``john.smith@legacy.test``): the mailbox list's address
column or the source directory's login attribute ties them, findings are named by the address and
say which login that is, and the engine still logs in with the login. Real Dovecot and slapd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus import message
from dovecot_lab import Lab, make_lab
from servers import imapfill
from servers.slapd import (
    LEGACY_PEOPLE,
    READER_DN,
    READER_PASSWORD,
    SlapdServer,
    find_slapd,
    ldif_entry,
    legacy_person,
)

from checks.model import Finding, Severity, State
from checks.runner import CheckRun, run_checks, select
from runners.errors import PlanError
from runners.plan.loader import load_plan

#: Source logins; in the directory jsmith and mdoe are people with other addresses, ghost is nobody.
LOGINS = ("jsmith", "mdoe", "ghost")
SOURCE_DIRECTORY = f"""
[directory.source]
url = "{{url}}"
base = "{LEGACY_PEOPLE}"
preset = "inetlocalmailrecipient"
bind_dn = "{READER_DN}"
bind_password = "env:LDAP_PW"
timeout = 5
"""


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    if find_slapd() is None:
        pytest.fail("slapd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    ou = ldif_entry(LEGACY_PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["people"]})
    people = legacy_person(LEGACY_PEOPLE, "jsmith", "john.smith@legacy.test") + legacy_person(
        LEGACY_PEOPLE, "mdoe", "mary.doe@legacy.test", mailLocalAddress=["m.doe@legacy.test"]
    )
    server = SlapdServer(ou + people).start()
    yield server
    server.stop()


@pytest.fixture
def lab(tmp_path: Path, dovecot_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Lab:
    users = {login: "pw" for login in LOGINS}
    source, target = dovecot_factory(users=users), dovecot_factory(users=users)
    for login in LOGINS[:2]:
        imapfill.append(source, login, "INBOX", message(f"for {login}"))
    monkeypatch.setenv("SRC_MASTER_PW", source.master_password)
    monkeypatch.setenv("DST_MASTER_PW", target.master_password)
    monkeypatch.setenv("LDAP_PW", READER_PASSWORD)
    mailboxes = tuple((login, login, "w") for login in LOGINS[:2])
    return make_lab(tmp_path / "lab", source, target, mailboxes=mailboxes)


def write_csv(lab: Lab, rows: str) -> None:
    (lab.root / "mailboxes.csv").write_text(rows, encoding="utf-8")


def add_directory(lab: Lab, slapd: SlapdServer) -> None:
    lab.plan.write_text(lab.plan.read_text() + SOURCE_DIRECTORY.format(url=slapd.url))


def run(lab: Lab, *ids: str) -> CheckRun:
    return run_checks(load_plan(lab.plan), select(only=ids))


def by_object(result: CheckRun, check_id: str) -> dict[str, Finding]:
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    assert outcome.state == State.OK, outcome.reason
    return {f.object_id: f for f in outcome.findings}


def test_the_address_column_names_findings_and_the_engine_keeps_the_login(lab: Lab) -> None:
    write_csv(lab, "source,target,wave,address\njsmith,jsmith,w,John.Smith@legacy.test\nmdoe,mdoe,w,\n")
    plan = load_plan(lab.plan)
    assert [(m.source, m.address) for m in plan.mailboxes] == [
        ("jsmith", "John.Smith@legacy.test"),
        ("mdoe", None),
    ]
    found = by_object(run(lab, "SRC-LOGIN-002", "SRC-READ-004"), "SRC-LOGIN-002")
    # jsmith by the address the list gives (lower-cased), with the login said; mdoe by its login.
    assert set(found) == {"john.smith@legacy.test", "mdoe"}
    assert "address john.smith@legacy.test (the mailbox list's address column), login jsmith" in (
        found["john.smith@legacy.test"].evidence
    )
    assert "login mdoe, address unknown" in found["mdoe"].evidence
    # The engine's own use of the list: it logs in as jsmith and copies the mailbox.
    code, summary = lab.run("w")
    assert code == 0 and summary["totals"]["copied"] == 2, summary


def test_the_source_directorys_login_attribute_gives_the_address(lab: Lab, slapd: SlapdServer) -> None:
    write_csv(lab, "source,target,wave\njsmith,jsmith,w\nmdoe,mdoe,w\nghost,ghost,w\n")
    add_directory(lab, slapd)
    result = run(lab, "SRC-SURVEY-003", "DIR-LOGIN-007")
    survey = by_object(result, "SRC-SURVEY-003")
    assert {"john.smith@legacy.test", "mary.doe@legacy.test", "ghost"} <= set(survey)
    assert "from uid in ldap://" in survey["mary.doe@legacy.test"].evidence
    tied = by_object(result, "DIR-LOGIN-007")
    assert tied["john.smith@legacy.test"].severity == Severity.PASS
    assert tied["john.smith@legacy.test"].observed.startswith("login jsmith is john.smith@legacy.test")
    assert (
        tied["ghost"].severity == Severity.WARNING and tied["ghost"].title == "Login without a known address"
    )
    # Another attribute holds the logins: with it named, nobody's login matches any more.
    lab.plan.write_text(lab.plan.read_text() + 'attributes = { uid = "mail" }\n')
    tied = by_object(run(lab, "DIR-LOGIN-007"), "DIR-LOGIN-007")
    assert {f.severity for f in tied.values()} == {Severity.WARNING}
    assert "no account with an address has this login as mail" in tied["jsmith"].observed


def test_an_address_column_that_contradicts_the_directory_is_a_warning(lab: Lab, slapd: SlapdServer) -> None:
    write_csv(
        lab,
        "source,target,wave,address\njsmith,jsmith,w,john.smith@legacy.test\nmdoe,mdoe,w,jd@legacy.test\n",
    )
    add_directory(lab, slapd)
    tied = by_object(run(lab, "DIR-LOGIN-007"), "DIR-LOGIN-007")
    assert tied["john.smith@legacy.test"].severity == Severity.PASS
    wrong = tied["jd@legacy.test"]
    assert wrong.severity == Severity.WARNING and wrong.title == "Address and directory account disagree"
    assert "m.doe@legacy.test, mary.doe@legacy.test" in wrong.observed and "dn: uid=mdoe" in wrong.evidence


def test_the_join_check_skips_when_every_login_is_an_address(lab: Lab) -> None:
    write_csv(lab, "source,target,wave,address\njsmith,jsmith,w,john.smith@legacy.test\n")
    (outcome,) = run(lab, "DIR-LOGIN-007").outcomes
    assert outcome.state == State.SKIPPED


@pytest.mark.parametrize(
    ("rows", "message_part"),
    [
        ("source,target,wave,address\njsmith,jsmith,w,john smith@x.test\n", 'address "john smith@x.test"'),
        ("source,target,wave,address\njsmith,jsmith,w,jsmith\n", "is not a mail address"),
        (
            "source,target,wave,address\na,a,w,j@x.test\nb,b,w,J@x.test\n",
            'address "J@x.test" is listed twice',
        ),
    ],
)
def test_bad_address_cells_are_plan_errors(lab: Lab, rows: str, message_part: str) -> None:
    write_csv(lab, rows)
    with pytest.raises(PlanError) as caught:
        load_plan(lab.plan)
    assert message_part in str(caught.value) and "[address]" in str(caught.value)


def test_triage_finds_a_mailbox_by_the_address_the_list_gives(lab: Lab) -> None:
    from checks.triage import find_entry

    write_csv(lab, "source,target,wave,address\njsmith,jsmith,w,john.smith@legacy.test\n")
    entry = find_entry(load_plan(lab.plan), "John.Smith@legacy.test")
    assert entry is not None and entry.source == "jsmith"

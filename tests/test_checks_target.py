"""Target checks against real Dovecot servers: logins with the engine's own opener, the folder plan
created (and removed again) on the target, and an APPEND on the canary that is removed again.

The source lays folders out as a file system (separator "/"), so a deep hierarchy of long names is
fine there; the target keeps Maildir++ (every folder one directory ``.a.b.c``), where the same
hierarchy is a name longer than the file system allows: Dovecot refuses it (in its words "Not found").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import Lab, make_lab
from servers import imapfill
from servers.dovecot import DovecotServer, find_dovecot

from checks.model import Finding, Severity, State
from checks.runner import CheckRun, run_checks, select
from runners.plan.loader import load_plan

LONG = "L" * 130
DEEP = f"Archive/{LONG}/{LONG}"  # on the target: ".Archive.LLL….LLL…", 270 bytes, one directory
TARGET_IDS = ("TGT-LOGIN-021", "TGT-CREATE-022", "TGT-APPEND-023", "TGT-FLAGS-024")
#: Dovecot's ACLs from a ``dovecot-acl`` file in each mailbox's INBOX, taken by every other folder.
ACL_CONF = "mail_plugins = $mail_plugins acl\nplugin {\n  acl = vfile\n  acl_defaults_from_inbox = yes\n}\n"


@dataclass
class Servers:
    source: DovecotServer
    target: DovecotServer
    #: A target whose quota is smaller than any message: every APPEND is refused OVERQUOTA.
    full: DovecotServer
    #: A target whose ACL lets the migration account (the master user) set only \\Seen and
    #: \\Deleted on alice's mail (no right "w"), and everything on bob's.
    no_flags: DovecotServer


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    if find_dovecot() is None:
        pytest.fail("dovecot is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    source = DovecotServer(
        mail_location="maildir:~/Maildir:LAYOUT=fs", extra_conf="namespace inbox {\n  separator = /\n}\n"
    )
    target, full = DovecotServer(), DovecotServer(quota_storage="100B")
    no_flags = DovecotServer(extra_conf=ACL_CONF)
    started: list[DovecotServer] = []
    try:
        for server in (source, target, full, no_flags):
            for user in ("alice", "bob"):
                server.add_user(user, f"{user}-pw")
            started.append(server.start())
        for folder in ("Projects", "Projects/2024", DEEP):
            imapfill.create_folder(source, "alice", folder)
        imapfill.append(source, "alice", "Projects", message("project mail"))
        imapfill.append(source, "bob", "INBOX", message("bob's mail"))
        for folder in ("Projects", "Notes"):
            imapfill.create_folder(source, "bob", folder)
        imapfill.create_folder(target, "bob", "Projects")  # already there: nothing to create
        for user, rights in (("alice", "lrsitekx"), ("bob", "lrwstipekxa")):
            with imapfill.connect(no_flags, user) as client:
                client.select_folder("INBOX")  # Dovecot makes the Maildir, as its own user
            (no_flags.maildir(user) / "dovecot-acl").write_text(
                f"owner lrwstipekxa\nuser={no_flags.master_user} {rights}\n"
            )
        yield Servers(source, target, full, no_flags)
    finally:
        for server in reversed(started):
            print(f"--- dovecot log ({server.root}) ---\n{server.log_text()}")
            server.stop()


def make(tmp_path: Path, servers: Servers, *, target: DovecotServer | None = None, tail: str = "") -> Lab:
    mailboxes = (("alice", "alice", "w"), ("bob", "bob", "w"), ("ghost", "ghost", "w"))
    return make_lab(
        tmp_path / "lab", servers.source, target or servers.target, mailboxes=mailboxes, tail=tail
    )


def run(lab: Lab, monkeypatch: pytest.MonkeyPatch, *ids: str) -> CheckRun:
    monkeypatch.setenv("SRC_MASTER_PW", lab.source.master_password)
    monkeypatch.setenv("DST_MASTER_PW", lab.target.master_password)
    return run_checks(load_plan(lab.plan), select(only=ids))


def findings(result: CheckRun, check_id: str) -> dict[tuple[str, str], Finding]:
    (outcome,) = [o for o in result.outcomes if o.check_id == check_id]
    assert outcome.state == State.OK, outcome.reason
    return {(f.object_id, f.key): f for f in outcome.findings}


def folders_and_subscriptions(server: DovecotServer, user: str) -> tuple[set[str], set[str]]:
    with imapfill.connect(server, user) as client:
        listed = {name for _, _, name in client.list_folders()}
        subscribed = {name for _, _, name in client.list_sub_folders()}
        client.select_folder("INBOX")
        listed.add(f"INBOX:{len(client.search('ALL'))}")
    return listed, subscribed


def test_logins_folder_plan_and_canary_append_fire_and_pass_leaving_nothing_behind(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {user: folders_and_subscriptions(servers.target, user) for user in ("alice", "bob")}
    lab = make(tmp_path, servers)

    result = run(lab, monkeypatch, *TARGET_IDS)

    logins = findings(result, "TGT-LOGIN-021")
    assert {k: f.severity for k, f in logins.items()} == {
        ("alice", ""): Severity.PASS, ("bob", ""): Severity.PASS, ("ghost", ""): Severity.BLOCKER,
    }  # fmt: skip
    ghost = logins[("ghost", "")]
    assert "AUTHORIZATIONFAILED" in ghost.evidence  # the server's words: the master may not be ghost
    assert "as ghost (SASL PLAIN as master user" in ghost.expected  # the engine's way of logging in

    folders = findings(result, "TGT-CREATE-022")
    deep_wire = f"Archive.{LONG}.{LONG}"
    refused = folders[(f"alice/{DEEP}", deep_wire)]
    assert refused.severity == Severity.BLOCKER
    assert f"CREATE {deep_wire}: Not found" in refused.evidence  # Dovecot's words for ENAMETOOLONG
    assert folders[("bob", "")].severity == Severity.PASS
    assert folders[("bob", "")].observed == "created and removed again: Notes; already there: INBOX, Projects"
    assert folders[("ghost", "")].severity == Severity.INFO  # not probed: no login
    assert not [f for f in folders.values() if f.key == "cleanup"]
    # alice's other planned folders were created fine: only the deep one is refused.
    assert [k for k, f in folders.items() if f.severity == Severity.BLOCKER] == [(f"alice/{DEEP}", deep_wire)]

    (append,) = findings(result, "TGT-APPEND-023").values()
    assert (append.severity, append.object_id) == (Severity.PASS, "alice")  # the first mailbox
    assert "UID EXPUNGE" in append.evidence and "APPENDUID" in append.evidence

    # Nothing left behind: the same folders, subscriptions and an INBOX as empty as before.
    assert {user: folders_and_subscriptions(servers.target, user) for user in ("alice", "bob")} == before


def test_a_target_that_would_drop_flags_is_a_blocker_before_anything_moves(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dovecot takes an APPEND with \\Flagged from an account without the ACL right "w" and keeps
    only \\Seen, without a word: the check reads each mailbox's PERMANENTFLAGS and says so."""
    lab = make(tmp_path, servers, target=servers.no_flags)

    result = run(lab, monkeypatch, "TGT-FLAGS-024")

    found = {mailbox: f for (mailbox, _), f in findings(result, "TGT-FLAGS-024").items()}
    assert {m: f.severity for m, f in found.items()} == {
        "alice": Severity.BLOCKER, "bob": Severity.PASS, "ghost": Severity.INFO,
    }  # fmt: skip
    alice = found["alice"]
    assert alice.title == "The target would drop \\Answered \\Flagged \\Draft from every copy"
    assert "PERMANENTFLAGS (\\Deleted \\Seen)" in alice.evidence  # the server's own words
    assert '"w"' in alice.remediation
    assert "\\*" in found["bob"].observed
    # What the blocker foretells, on the same server: the flags are dropped without a word.
    with imapfill.connect(servers.no_flags, "alice", master=True) as client:
        client.append("INBOX", message("flagged"), ("\\Flagged", "\\Seen", "$Label1"), None)
        client.select_folder("INBOX")
        kept = client.get_flags(client.search("ALL")).values()
        assert [set(f) - {b"\\Recent"} for f in kept] == [{b"\\Seen"}]


def test_the_canary_from_the_plan_refuses_an_append_over_quota(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = make(tmp_path, servers, target=servers.full, tail='[checks]\ncanary = "bob"\n')

    result = run(lab, monkeypatch, "TGT-APPEND-023", "TGT-LOGIN-021")

    (append,) = findings(result, "TGT-APPEND-023").values()
    assert (append.severity, append.object_id) == (Severity.BLOCKER, "bob")
    assert "OVERQUOTA" in append.observed and "quota" in append.remediation
    assert findings(result, "TGT-LOGIN-021")[("bob", "")].severity == Severity.PASS
    with imapfill.connect(servers.full, "bob") as client:
        client.select_folder("INBOX")
        assert client.search("ALL") == []


def test_a_canary_that_names_no_mailbox_is_an_error(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = make(tmp_path, servers, tail='[checks]\ncanary = "nobody"\n')
    (outcome,) = run(lab, monkeypatch, "TGT-APPEND-023").outcomes
    assert outcome.state == State.ERROR
    assert '[checks] canary = "nobody"' in outcome.reason


def test_cutover_check_category_target_runs_the_target_checks(tmp_path: Path, servers: Servers) -> None:
    lab = make(tmp_path, servers)
    proc = lab.cutover("check", "--plan", str(lab.plan), "--category", "target", "--output", "json")
    assert proc.returncode == 1, proc.stderr  # ghost can't log in
    states = {c["check_id"]: c["state"] for c in json.loads(proc.stdout)["checks"]}
    assert dict.fromkeys(TARGET_IDS, "ok").items() <= states.items()

"""Every source type and login style through the whole engine, into a real IMAP target."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from corpus import awkward_messages, dates, message
from dovecot_lab import Lab, assert_same_mailbox, make_lab, rewrite_table, write_plan
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.connectors.imap_login import open_imap
from runners.plan.loader import load_plan


def fill(server: DovecotServer) -> None:
    imapfill.create_folder(server, "alice", "Archiv.Ältere")
    imapfill.create_folder(server, "alice", "Sent")
    for n, (body, date) in enumerate(zip(awkward_messages(), dates(20), strict=False)):
        flags = [("\\Seen",), (), ("\\Flagged", "$Forwarded"), ("\\Answered", "\\Seen")][n % 4]
        imapfill.append(server, "alice", ["INBOX", "Archiv.Ältere", "Sent"][n % 3], body, flags, date)


def flags_by_subject(target: DovecotServer) -> dict[bytes, frozenset[str]]:
    """alice's INBOX on ``target``: each message's flags by its subject."""
    inbox = imapfill.folder_snapshot(target, "alice", master=True)["INBOX"]
    return {m[0].split(b"Subject: ")[1].split(b"\r\n")[0]: m[1] for m in inbox}


def use_maildir_source(lab: Lab, path: str, *, layout: str = "dovecot") -> None:
    """The lab's plan reads its source from Maildirs at ``path`` (with ``{user}``) instead of IMAP."""
    table = f'[source]\ntype = "maildir"\npath = "{path}"\nmaildir_layout = "{layout}"\n\n'
    rewrite_table(lab.plan, "source", lambda _: table)


def test_pop3_source_lands_in_inbox_and_reruns_by_uidl(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    bodies = [*awkward_messages(), message("dup"), message("dup")]
    for body in bodies:
        imapfill.append(source_dovecot, "alice", "INBOX", body)
    before = imapfill.folder_snapshot(source_dovecot, "alice", master=True)
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    lab.plan.write_text(
        lab.plan.read_text()
        .replace('type = "imap"', 'type = "pop3"', 1)
        .replace(f"port = {source_dovecot.imap_port}", f"port = {source_dovecot.pop3_port}")
    )

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == len(bodies)
    target = imapfill.folder_snapshot(target_dovecot, "alice", master=True)
    source = imapfill.folder_snapshot(source_dovecot, "alice", master=True)
    assert [m[0] for m in target["INBOX"]] == [m[0] for m in source["INBOX"]]
    assert source == before, "POP3 extraction changed the source mailbox (flags or messages)"
    # UIDLs make the rerun a no-op; a new message is the only copy.
    assert lab.run()[1]["totals"]["copied"] == 0
    imapfill.append(source_dovecot, "alice", "INBOX", message("new by pop"))
    assert lab.run()[1]["totals"]["copied"] == 1
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report


def test_maildir_source_matches_what_the_server_serves(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    fill(source_dovecot)
    root = str(source_dovecot.maildir("alice")).replace("/alice/", "/{user}/")
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    use_maildir_source(lab, root)

    code, summary = lab.run()

    assert code == 0, summary
    # Bodies, flags, dates and folders as the source server itself shows them over IMAP.
    assert_same_mailbox(source_dovecot, target_dovecot)
    assert lab.run()[1]["totals"]["copied"] == 0
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report


def test_maildir_folders_with_empty_name_parts_are_copied_not_dropped(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    """Directories a tool or a hand made (``..x``, ``.a..b``, ``...``) hold mail too: no IMAP target
    takes an empty name part, so they go where an IMAP source's would (``x``, ``a/b``), beside a
    folder of that name if there is one, and none of their messages is left behind."""
    root = tmp_path / "maildirs" / "alice"
    for folder in ("", ".x", "..x", ".a..b", "..."):
        for sub in ("cur", "new", "tmp"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        name = folder or "INBOX"
        (root / folder / "cur" / f"1700000001.M1P1.{len(folder)}:2,S").write_bytes(message(f"in {name}"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    source = str(root).replace("/alice", "/{user}")
    use_maildir_source(lab, source)

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == 5
    target = imapfill.folder_snapshot(target_dovecot, "alice", master=True)
    subjects = {
        f: sorted(m[0].split(b"Subject: ")[1].split(b"\r\n")[0] for m in msgs) for f, msgs in target.items()
    }
    assert subjects["x"] == [b"in ..x", b"in .x"], subjects
    assert subjects["a.b"] == [b"in .a..b"], subjects
    assert subjects["__"] == [b"in ..."], subjects
    assert all(flags == frozenset({"\\Seen"}) for msgs in target.values() for _, flags, _ in msgs)
    assert lab.run()[1]["totals"]["copied"] == 0
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report


def test_courier_keywords_reach_the_target_and_verify_holds_them(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    """A Courier-IMAP Maildir keeps its keywords in ``courierimapkeywords/``, not in the file names:
    they are copied (the newest change over ``:list``), verify holds the target to them and to the
    size of the bytes sent, and a rerun copies nothing."""
    root = tmp_path / "maildirs" / "alice"
    for sub in ("cur", "new", "tmp", "courierimapkeywords"):
        (root / sub).mkdir(parents=True)
    bases = [f"160000000{n}.{n}.courier" for n in range(3)]
    for n, base in enumerate(bases):
        # Courier stores mail with bare LF and names no ",W=" size: the copy is the CRLF form, and
        # verify holds the target to the bytes sent, not to the file's size.
        (root / "cur" / f"{base}:2,S").write_bytes(message(f"courier {n}").replace(b"\r\n", b"\n"))
    (root / "courierimapkeywords" / ":list").write_text(f"$Label1\nNonJunk\n\n{bases[0]}:0 1\n{bases[1]}:1\n")
    (root / "courierimapkeywords" / f".7.{bases[1]}").write_text("$Label2\n")  # changed since
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    source = str(root).replace("/alice", "/{user}")
    use_maildir_source(lab, source, layout="courier")

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == 3
    flags = flags_by_subject(target_dovecot)
    assert flags == {
        b"courier 0": frozenset({"\\Seen", "$Label1", "NonJunk"}),
        b"courier 1": frozenset({"\\Seen", "$Label2"}),
        b"courier 2": frozenset({"\\Seen"}),
    }, flags
    assert lab.run()[1]["totals"]["copied"] == 0
    verify_code, report = lab.verify("pilot")
    assert verify_code == 0, report


def test_flags_no_imap_target_takes_are_recorded_with_their_messages(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    """A Maildir keyword letter that ``dovecot-keywords`` doesn't name and a keyword that isn't an
    IMAP atom reach no IMAP server: the copies go without them, and the run records each as a
    warning naming the messages and why, once (a rerun copies nothing and repeats nothing)."""
    root = tmp_path / "maildirs" / "alice"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "dovecot-keywords").write_text("0 $Label1\n1 Wichtig-ä\n")
    for n, letters in enumerate(("Sa", "Sab", "Sbz", "S")):
        (root / "cur" / f"170000000{n}.M{n}P1.mx:2,{letters}").write_bytes(message(f"maildir {n}"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    use_maildir_source(lab, str(root).replace("/alice", "/{user}"))

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == 4
    flags = flags_by_subject(target_dovecot)
    assert flags == {
        b"maildir 0": frozenset({"\\Seen", "$Label1"}),
        b"maildir 1": frozenset({"\\Seen", "$Label1"}),
        b"maildir 2": frozenset({"\\Seen"}),
        b"maildir 3": frozenset({"\\Seen"}),
    }, flags

    def left_off() -> list[tuple[str, str, str]]:
        db = sqlite3.connect(lab.plan.parent / ".cutover" / "state.db")
        try:
            rows = db.execute("SELECT level, folder, message FROM events WHERE kind = 'left-off' ORDER BY id")
            return [tuple(r) for r in rows.fetchall()]
        finally:
            db.close()

    assert left_off() == [
        (
            "warning",
            "INBOX",
            "the copies of 1 message(s) go without the Maildir keyword letter 'z': the folder's "
            "dovecot-keywords names no keyword for it; UIDs 3",
        ),
        (
            "warning",
            "INBOX",
            "the copies of 2 message(s) go without the keyword 'Wichtig-ä': an IMAP keyword is an atom "
            '(printable ASCII without space or ( ) { % * " \\ ]), so no IMAP server takes it; UIDs 2:3',
        ),
    ]
    assert lab.run()[1]["totals"]["copied"] == 0
    assert len(left_off()) == 2
    verify_code, report = lab.verify("pilot")
    assert verify_code == 0, report

    # Given the keyword on the source since: the next pass's flag change goes without it, and says so.
    (root / "cur" / "1700000003.M3P1.mx:2,S").rename(root / "cur" / "1700000003.M3P1.mx:2,Sab")
    assert lab.run()[0] == 0
    assert flags_by_subject(target_dovecot)[b"maildir 3"] == frozenset({"\\Seen", "$Label1"})
    assert [m for _, _, m in left_off()[2:]] == [
        "the copies of 1 message(s) go without the keyword 'Wichtig-ä': an IMAP keyword is an atom "
        '(printable ASCII without space or ( ) { % * " \\ ]), so no IMAP server takes it; UIDs 4'
    ]


def test_login_template_and_per_user_passwords(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    fill(source_dovecot)
    lab = make_lab(
        tmp_path / "lab", source_dovecot, target_dovecot, source_extra='login_template = "{user}*{master}"'
    )
    rewrite_table(lab.plan, "target", lambda table: table.split("auth =")[0] + 'auth = "password"\n\n')
    (lab.root / "mailboxes.csv").write_text(
        "source,target,wave,target_password\nalice,alice,pilot,env:ALICE_PW\n"
    )
    env = lab.env | {"ALICE_PW": target_dovecot.users["alice"]}
    proc = lab.cutover("run", "--plan", str(lab.plan), "--wave", "pilot", env=env)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_same_mailbox(source_dovecot, target_dovecot)


def _tls_plan(root: Path, source: DovecotServer, target: DovecotServer, target_tls: str) -> Lab:
    lab = make_lab(root, source, target)
    rewrite_table(
        lab.plan,
        "target",
        lambda table: (
            table.replace(f"port = {target.imap_port}", f"port = {target.imaps_port}").replace(
                'security = "plain"', 'security = "tls"'
            )
            + target_tls
            + "\n"
        ),
    )
    return lab


def test_tls_target_is_verified_against_the_plans_ca(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: Any
) -> None:
    target = dovecot_factory(tls=True)
    imapfill.append(source_dovecot, "alice", "INBOX", message("over tls"))
    lab = _tls_plan(tmp_path, source_dovecot, target, f'ca_file = "{target.ca_file}"')

    code, summary = lab.run()

    assert code == 0, summary
    assert_same_mailbox(source_dovecot, target)


def test_untrusted_tls_certificate_is_refused_unless_the_plan_says_otherwise(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: Any
) -> None:
    target = dovecot_factory(tls=True)
    imapfill.append(source_dovecot, "alice", "INBOX", message("over tls"))
    lab = _tls_plan(tmp_path / "strict", source_dovecot, target, "")

    code, summary = lab.run()

    assert code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in summary["mailboxes"][0]["error"]
    relaxed = _tls_plan(tmp_path / "relaxed", source_dovecot, target, "tls_verify = false")
    proc = relaxed.cutover("run", "--plan", str(relaxed.plan), "--wave", "pilot")
    assert proc.returncode == 0
    assert "NOT verified" in proc.stderr


def test_imap_login_speaks_sasl_plain_with_authorization_identity(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, monkeypatch: Any
) -> None:
    plan = load_plan(write_plan(tmp_path / "lab", source_dovecot, target_dovecot))
    monkeypatch.setenv("SRC_MASTER_PW", source_dovecot.master_password)
    conn = open_imap(plan.source, "bob", None)
    try:
        # Logged in as bob through the master user: bob's INBOX, not admin's.
        reply = conn.check(b"NAMESPACE", "NAMESPACE")
        assert reply.status == "OK"
        assert "AUTH=PLAIN" not in conn.capabilities  # post-login capabilities
    finally:
        conn.close()
    assert "Master user logging in as bob" in source_dovecot.log_text()


def test_verify_says_when_the_target_kept_another_arrival_date_than_the_one_sent(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    """POP3 has no INTERNALDATE: the copy is sent with the date of its top Received header. A
    server may store another (Dovecot keeps the time of the APPEND for a date in the future): the
    message is then not on the target with its arrival date, and verify lists it with both dates."""
    future = (
        b"Received: from mx.example.test by mail.example.test; Thu, 01 Jan 2099 10:00:00 +0000\r\n"
        b"From: a@example.test\r\nSubject: from the future\r\n\r\nbody\r\n"
    )
    imapfill.append(source_dovecot, "alice", "INBOX", future)
    imapfill.append(source_dovecot, "alice", "INBOX", message("an ordinary one"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    lab.plan.write_text(
        lab.plan.read_text()
        .replace('type = "imap"', 'type = "pop3"', 1)
        .replace(f"port = {source_dovecot.imap_port}", f"port = {source_dovecot.pop3_port}")
    )
    assert lab.run()[1]["totals"]["copied"] == 2

    verify_code, report = lab.verify()

    assert verify_code == 1, report
    (difference,) = [d for m in report["mailboxes"] for d in m["differences"]]
    assert difference["bucket"] == "different"
    assert "it was sent with 01-Jan-2099 10:00:00 +0000" in difference["reason"]
    assert "2099" not in difference["reason"].split(";")[0]  # what the target keeps instead


def test_verify_leaves_the_date_of_a_copy_matched_on_the_target_alone(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    """A source folder restored from a backup (new UIDVALIDITY, the restore's arrival dates) is
    matched on the target by content, not sent again: the target's items keep the dates they were
    copied with, and verify does not hold the restore's dates against the run."""
    when = dates(4)
    imapfill.create_folder(source_dovecot, "alice", "Work")
    for n in range(2):
        imapfill.append(source_dovecot, "alice", "Work", message(f"work {n}"), (), when[n])
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    assert lab.run()[0] == 0
    with imapfill.connect(source_dovecot, "alice", master=True) as client:
        client.delete_folder("Work")
        client.create_folder("Work")
    for n in range(2):
        imapfill.append(source_dovecot, "alice", "Work", message(f"work {n}"), (), when[n + 2])
    code, summary = lab.run()
    assert code == 0 and summary["totals"]["matched_by_content"] == 2, summary

    verify_code, report = lab.verify()

    assert verify_code == 0, report
    assert report["compared_by"] == "count-size-date-and-flags"


def test_an_arrival_date_is_compared_as_a_moment_and_one_never_sent_proves_nothing() -> None:
    from runners.verify import _arrival_differs

    assert not _arrival_differs("01-Jan-2024 10:00:00 +0200", "01-Jan-2024 08:00:00 +0000")  # same moment
    assert _arrival_differs("01-Jan-2024 10:00:00 +0000", "01-Jan-2024 10:00:01 +0000")
    # The source's date didn't parse: the APPEND went without one (the ledger notes it).
    assert not _arrival_differs("garbage-date", "07-Dec-2026 13:05:55 +0000")
    assert not _arrival_differs(None, "07-Dec-2026 13:05:55 +0000")
    assert not _arrival_differs("01-Jan-2024 10:00:00 +0000", None)


def test_deep_verify_names_the_lengths_when_the_target_rewrites_a_message(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    """Real mail has bare CRs; Dovecot, as a target, stores such a message one byte shorter than sent
    and the APPEND still says OK. A deep verify says which copy differs and by how many bytes (a
    zero-byte message, which Dovecot refuses, is failed with its words); a plain verify, by the
    size of the bytes sent."""
    imapfill.append(source_dovecot, "alice", "INBOX", message("ordinary"))
    cur = source_dovecot.maildir("alice") / "cur"
    (cur / "1700000001.M1P1.odd:2,S").write_bytes(b"Subject: cr\r\r\rbody\rmore\r")
    (cur / "1700000002.M2P1.odd:2,S").write_bytes(b"")
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    code, summary = lab.run()
    assert code == 1 and summary["totals"]["copied"] == 2 and summary["totals"]["failed"] == 1, summary

    # A plain verify sees it too: the target's size of the copy against the bytes that were sent.
    plain_code, plain = lab.verify("pilot")
    assert plain_code == 1, plain
    plain_reasons = sorted(d["reason"] for m in plain["mailboxes"] for d in m["differences"])
    assert re.fullmatch(r"target item \d+ is 23 bytes; the copy sent was 24", plain_reasons[0]), plain_reasons

    verify_code, report = lab.verify("pilot", "--deep")

    assert verify_code == 1, report
    reasons = sorted(d["reason"] for m in report["mailboxes"] for d in m["differences"])
    assert len(reasons) == 2, reasons
    assert reasons[1].startswith("target refused APPEND: NO Can't save a zero byte message"), reasons
    assert re.fullmatch(
        r"target item \d+ differs from the source bytes \(23 bytes kept, the source has 24\)", reasons[0]
    )

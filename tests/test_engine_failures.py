"""Nothing skipped silently: every message not copied is recorded with its exact reason."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import assert_same_mailbox, doveadm, make_lab
from servers import imapfill
from servers.dovecot import DovecotServer

BIG = message("big attachment", "A" * 76 + "\n" + ("B" * 76 + "\n") * 25_000)  # ~1.9 MB


def test_message_over_the_plan_limit_is_skipped_with_its_reason(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("small"))
    imapfill.append(source_dovecot, "alice", "INBOX", BIG)
    lab = make_lab(
        tmp_path / "lab", source_dovecot, target_dovecot, target_extra="max_message_bytes = 1000000"
    )

    code, summary = lab.run()

    assert code == 1
    assert summary["totals"]["copied"] == 1 and summary["totals"]["skipped"] == 1
    rows = lab.status("--failures")["not_copied"]
    assert [(r["uid"], r["status"]) for r in rows] == [(2, "skipped")]
    assert f"{len(BIG)} bytes, over the target limit of 1000000 bytes" in rows[0]["reason"]
    verify_code, report = lab.verify()
    assert verify_code == 1
    assert report["totals"]["skipped"] == 1 and report["totals"]["ok"] == 1


def test_message_the_target_refuses_keeps_the_servers_words(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: object
) -> None:
    target = dovecot_factory(quota_max_mail_size="1M")  # type: ignore[operator]
    for n in range(3):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"before {n}"))
    imapfill.append(source_dovecot, "alice", "INBOX", BIG)
    for n in range(3):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"after {n}"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target)

    code, summary = lab.run()

    assert code == 1
    assert summary["totals"]["copied"] == 6 and summary["totals"]["failed"] == 1
    rows = lab.status("--failures")["not_copied"]
    assert len(rows) == 1 and rows[0]["uid"] == 4 and rows[0]["status"] == "failed"
    # Dovecot's own refusal, verbatim.
    assert (
        "NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration"
        in rows[0]["reason"]
    )
    # A rerun retries it, fails the same way, and duplicates nothing.
    code, summary = lab.run()
    assert code == 1 and summary["totals"]["copied"] == 0 and summary["totals"]["failed"] == 1
    assert len(imapfill.folder_snapshot(target, "alice", master=True)["INBOX"]) == 6


def test_over_quota_stops_the_mailbox_not_the_run(tmp_path: Path, dovecot_factory: object) -> None:
    users = {"alice": "a", "bob": "b"}
    source = dovecot_factory(users=users)  # type: ignore[operator]
    target = dovecot_factory(users=users, quota_storage="100k")  # type: ignore[operator]
    for n in range(40):
        imapfill.append(source, "alice", "INBOX", message(f"alice {n}", "x" * 5000))
    imapfill.append(source, "bob", "INBOX", message("bob"))
    lab = make_lab(tmp_path / "lab", source, target, mailboxes=(("alice", "alice", "w"), ("bob", "bob", "w")))

    code, summary = lab.run("w")

    assert code == 1
    boxes = {m["source"]: m for m in summary["mailboxes"]}
    assert boxes["alice"]["state"] == "failed" and "OVERQUOTA" in boxes["alice"]["error"]
    assert boxes["bob"]["state"] == "ok"
    status = {m["source"]: m for m in lab.status()["mailboxes"]}
    assert status["alice"]["error_kind"] == "target-refused-mailbox"


def test_folder_the_source_refuses_to_select_is_recorded_and_the_rest_copied(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    for folder in ["Good", "Locked"]:
        imapfill.create_folder(source_dovecot, "alice", folder)
        imapfill.append(source_dovecot, "alice", folder, message(f"in {folder}"))
    imapfill.append(source_dovecot, "alice", "INBOX", message("inbox"))
    locked = source_dovecot.maildir("alice") / ".Locked"
    locked.chmod(0)
    try:
        lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
        code, summary = lab.run()
    finally:
        locked.chmod(0o700)

    assert code == 1
    assert summary["totals"]["copied"] == 2
    (mailbox,) = summary["mailboxes"]
    assert mailbox["state"] == "partial"
    errors = {f["source"]: f["error"] for f in mailbox["folders"] if f["error"]}
    assert list(errors) == ["Locked"]
    assert "[SERVERBUG] Internal error occurred." in errors["Locked"]  # Dovecot's words, verbatim
    assert lab.status()["folder_errors"][0]["source_path"] == "Locked"
    # Once the folder is readable again, the next pass copies it.
    assert lab.run()[0] == 0
    assert_same_mailbox(source_dovecot, target_dovecot)


def test_wrong_master_password_fails_the_mailbox_without_leaking(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("x"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    env = lab.env | {"SRC_MASTER_PW": "not-the-password-7f3a"}

    proc = lab.cutover("run", "--plan", str(lab.plan), "--wave", "pilot", env=env)

    assert proc.returncode == 1
    assert "AUTHENTICATIONFAILED" in proc.stdout
    assert "not-the-password-7f3a" not in proc.stdout + proc.stderr


def test_dropped_connections_reconnect_and_resume(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    for n in range(400):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"m {n}", "y" * 20_000))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot, tail="[run]\nbatch_messages = 20\n")
    stop = threading.Event()

    def kick() -> None:
        # Dovecot's own admin command drops every session of the user mid-run, twice.
        kicked = 0
        while kicked < 2 and not stop.is_set():
            if "alice" in doveadm(source_dovecot, "kick", "alice").stdout:
                kicked += 1
                stop.wait(1.5)
            else:
                stop.wait(0.02)

    kicker = threading.Thread(target=kick)
    kicker.start()
    try:
        code, summary = lab.run()
    finally:
        stop.set()
        kicker.join()

    assert code == 0, summary
    assert summary["totals"]["copied"] == 400
    assert summary["totals"]["reconnects"] >= 1
    assert_same_mailbox(source_dovecot, target_dovecot)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown files to the mail user")
def test_corrupt_message_on_the_source_is_recorded(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("good one"))
    imapfill.append(source_dovecot, "alice", "INBOX", message("soon broken", "z" * 3000))
    imapfill.append(source_dovecot, "alice", "INBOX", message("good two"))
    # Make the second message's file unreadable to the mail process: FETCH fails for it alone.
    maildir = source_dovecot.maildir("alice")
    files = [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]
    (broken,) = [p for p in files if b"soon broken" in p.read_bytes()]
    broken.chmod(0)
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)

    code, summary = lab.run()

    assert code == 1
    assert summary["totals"]["copied"] == 2 and summary["totals"]["failed"] == 1
    (row,) = lab.status("--failures")["not_copied"]
    assert row["uid"] == 2 and row["status"] == "failed"
    # Dovecot hangs up on a message it can't read; its parting words are kept verbatim.
    assert "closed the connection while sending this message" in row["reason"]
    assert "BYE FETCH failed: Internal error occurred" in row["reason"]


def test_busy_source_is_retried_later_not_given_up(tmp_path: Path, dovecot_factory: object) -> None:
    # One session per user and IP: while the user's own client holds it, our login is turned away.
    source = dovecot_factory(extra_conf="mail_max_userip_connections = 1\n")  # type: ignore[operator]
    target = dovecot_factory()  # type: ignore[operator]
    imapfill.append(source, "alice", "INBOX", message("waiting"))
    lab = make_lab(tmp_path / "lab", source, target)
    holder = imapfill.connect(source, "alice")
    # The holder leaves once Dovecot has turned our login away (its log says so), not after a
    # fixed time: on a slow machine the run may not even have started by then.
    threading.Thread(target=_release_after_refusal, args=(source, holder), daemon=True).start()

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == 1
    assert summary["totals"]["reconnects"] >= 1
    events = lab.status()
    assert events["mailboxes"][0]["state"] == "ok"


def test_retry_failed_only_and_an_operators_skip(
    tmp_path: Path, source_dovecot: DovecotServer, dovecot_factory: object
) -> None:
    target = dovecot_factory(quota_max_mail_size="1M")  # type: ignore[operator]
    imapfill.append(source_dovecot, "alice", "INBOX", message("fine"))
    imapfill.append(source_dovecot, "alice", "INBOX", BIG)
    lab = make_lab(tmp_path / "lab", source_dovecot, target)
    assert lab.run()[0] == 1
    imapfill.append(source_dovecot, "alice", "INBOX", message("arrived after the pass"))

    # Retry only: the refused message is tried again (and refused again); the new one waits.
    code, summary = lab.run("pilot", "--retry-failed")
    assert code == 1 and summary["kind"] == "retry"
    assert summary["totals"]["copied"] == 0 and summary["totals"]["failed"] == 1
    assert len(imapfill.folder_snapshot(target, "alice", master=True)["INBOX"]) == 1

    # The operator decides the big one is not to be copied: reruns leave it, verify lists it and passes.
    skipped = lab.cutover(
        "skip",
        "--plan",
        str(lab.plan),
        "--mailbox",
        "alice",
        "--folder",
        "INBOX",
        "--uid",
        "2",
        "--reason",
        "attachment archived elsewhere, ticket 4711",
    )
    assert skipped.returncode == 0, skipped.stderr
    code, summary = lab.run()
    assert code == 0 and summary["totals"]["copied"] == 1  # the new message; nothing failed now
    verify_code, report = lab.verify()
    assert verify_code == 0 and report["totals"]["waived"] == 1
    (difference,) = report["mailboxes"][0]["differences"]
    assert difference["bucket"] == "waived" and "ticket 4711" in difference["reason"]
    assert "decided by" in difference["reason"]


def test_a_folder_the_source_refuses_is_not_created_empty_on_the_target(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    imapfill.create_folder(source_dovecot, "alice", "Refused")
    imapfill.create_folder(source_dovecot, "alice", "Empty")
    imapfill.append(source_dovecot, "alice", "Refused", message("hidden"))
    (source_dovecot.maildir("alice") / ".Refused").chmod(0)
    try:
        lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
        assert lab.run()[0] == 1
    finally:
        (source_dovecot.maildir("alice") / ".Refused").chmod(0o700)
    folders = set(imapfill.folder_snapshot(target_dovecot, "alice", master=True))
    assert folders == {"INBOX", "Empty"}  # an empty source folder is still created


def _release_after_refusal(source: object, holder: object, deadline: float = 120.0) -> None:
    log = source.root / "dovecot.log"  # type: ignore[attr-defined]
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if "Maximum number of connections from user+IP exceeded" in log.read_text(errors="replace"):
            break
        time.sleep(0.1)
    holder.logout()  # type: ignore[attr-defined]

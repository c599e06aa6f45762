"""The copy engine against two real Dovecot servers: fidelity, idempotence, deltas."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import awkward_messages, dates, message
from dovecot_lab import Lab, assert_same_mailbox, make_lab, uidnexts
from servers import imapfill
from servers.dovecot import DovecotServer

FOLDERS = ["Archive", "Archive.2023", "Archive.2023.Q4", "Entwürfe", "日本語 メール", "Trash", "Empty"]
FLAG_SETS = [
    (),
    ("\\Seen",),
    ("\\Seen", "\\Answered"),
    ("\\Flagged", "$Forwarded"),
    ("\\Draft",),
    ("\\Seen", "\\Deleted"),
    ("$label1", "Junk", "\\Seen"),
]


def fill_varied(server: DovecotServer, user: str = "alice") -> int:
    """Every awkward message in INBOX and each folder, with varied flags and dates; returns the count."""
    for folder in FOLDERS:
        imapfill.create_folder(server, user, folder)
    bodies = awkward_messages()
    when = dates(len(bodies) * 3)
    count = 0
    for f_index, folder in enumerate(["INBOX", "Archive.2023", "Entwürfe", "日本語 メール"]):
        for i, body in enumerate(bodies):
            flags = FLAG_SETS[(i + f_index) % len(FLAG_SETS)]
            imapfill.append(server, user, folder, body, flags, when[(i + f_index) % len(when)])
            count += 1
    # Byte-identical duplicates are distinct messages: all three must arrive.
    for _ in range(3):
        imapfill.append(server, user, "Trash", message("dup", message_id="<dup@example.test>"))
        count += 1
    return count


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer) -> Lab:
    return make_lab(tmp_path / "lab", source_dovecot, target_dovecot)


def test_full_copy_is_byte_exact_with_flags_dates_and_folders(lab: Lab) -> None:
    total = fill_varied(lab.source)

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == total
    assert summary["totals"]["failed"] == summary["totals"]["skipped"] == 0
    assert_same_mailbox(lab.source, lab.target)
    # The ordered snapshots match too: messages keep their order within each folder.
    assert imapfill.folder_snapshot(lab.source, "alice", master=True) == imapfill.folder_snapshot(
        lab.target, "alice", master=True
    )


def test_rerun_appends_nothing(lab: Lab) -> None:
    fill_varied(lab.source)
    assert lab.run()[0] == 0
    before = uidnexts(lab.target)

    code, summary = lab.run()

    assert code == 0
    assert summary["kind"] == "delta"
    assert summary["totals"]["copied"] == 0
    # Any APPEND, even of a message later removed, would have moved a folder's UIDNEXT.
    assert uidnexts(lab.target) == before
    assert_same_mailbox(lab.source, lab.target)


def test_delta_pass_copies_only_new_messages_and_syncs_flags(lab: Lab) -> None:
    fill_varied(lab.source)
    assert lab.run()[0] == 0
    imapfill.append(lab.source, "alice", "INBOX", message("arrived later"), ("\\Flagged",))
    imapfill.append(lab.source, "alice", "Archive.2023.Q4", message("new in an empty folder"))
    with imapfill.connect(lab.source, "alice", master=True) as client:
        client.select_folder("INBOX")
        first = client.search("ALL")[0]
        client.set_flags([first], ["\\Seen", "\\Answered", "$Important"])
        client.select_folder("Archive.2023")
        client.remove_flags(client.search("ALL"), ["\\Seen"])

    code, summary = lab.run()

    assert code == 0
    assert summary["totals"]["copied"] == 2
    assert summary["totals"]["flags_synced"] >= 2
    assert_same_mailbox(lab.source, lab.target)


def test_verify_compares_the_flags_each_copy_was_given(lab: Lab) -> None:
    """verify holds each copy's flags against what the last pass gave it: a flag lost or added on
    the target is a difference with both lists named; a change on the source since the last pass
    is not (the next pass carries it over, and then verify agrees again)."""
    for n, flags in enumerate([("\\Seen",), ("\\Flagged", "$Label1"), (), ("\\Answered", "\\Seen")]):
        imapfill.append(lab.source, "alice", "INBOX", message(f"flagged {n}"), flags)
    assert lab.run()[0] == 0
    assert lab.verify()[0] == 0
    with imapfill.connect(lab.source, "alice", master=True) as client:
        client.select_folder("INBOX")
        client.add_flags([client.search("ALL")[0]], ["\\Deleted"])
    assert lab.verify()[0] == 0  # changed on the source after the pass: not the copy's fault
    with imapfill.connect(lab.target, "alice", master=True) as client:
        client.select_folder("INBOX")
        second, third = client.search("ALL")[1:3]
        client.remove_flags([second], ["$Label1"])  # a keyword the copy lost
        client.add_flags([third], ["\\Seen"])  # a flag it never had

    code, report = lab.verify()

    assert code == 1, report
    reasons = sorted(d["reason"] for m in report["mailboxes"] for d in m["differences"])
    assert reasons == [
        f"target item {second} keeps the flags (\\Flagged); it was given ($Label1 \\Flagged)",
        f"target item {third} keeps the flags (\\Seen); it was given (none)",
    ], reasons
    assert report["totals"]["different"] == 2 and report["totals"]["ok"] == 2
    with imapfill.connect(lab.target, "alice", master=True) as client:
        client.select_folder("INBOX")
        client.add_flags([second], ["$label1"])  # a keyword's case is the server's to keep
        client.remove_flags([third], ["\\Seen"])
    assert lab.run()[0] == 0  # carries the source's \Deleted over
    assert lab.verify()[0] == 0


def test_new_folder_on_source_is_created_on_rerun(lab: Lab) -> None:
    imapfill.append(lab.source, "alice", "INBOX", message("first"))
    assert lab.run()[0] == 0
    imapfill.create_folder(lab.source, "alice", "Projects.Zürich")
    imapfill.append(lab.source, "alice", "Projects.Zürich", message("in a new folder"))

    assert lab.run()[0] == 0

    assert_same_mailbox(lab.source, lab.target)


def test_uidvalidity_change_matches_by_content_without_duplicates(lab: Lab) -> None:
    imapfill.create_folder(lab.source, "alice", "Work")
    bodies = [message(f"work {i}") for i in range(5)] + [message("twin")] * 2
    when = dates(9)
    for body, date in zip(bodies, when, strict=False):
        imapfill.append(lab.source, "alice", "Work", body, ("\\Seen",), date)
    assert lab.run()[0] == 0
    # Recreating the folder gives it a new UIDVALIDITY: every UID the ledger knows is void.
    with imapfill.connect(lab.source, "alice", master=True) as client:
        client.delete_folder("Work")
        client.create_folder("Work")
    # Same messages and dates; flags changed meanwhile: matched messages get the source's flags.
    for body, date in zip([*bodies, message("twin"), message("brand new")], when, strict=True):
        imapfill.append(lab.source, "alice", "Work", body, ("\\Flagged",), date)

    code, summary = lab.run()

    assert code == 0, summary
    # Seven were already there; the third twin and the new one are the only copies.
    assert summary["totals"]["copied"] == 2
    assert summary["totals"]["matched_by_content"] == 7
    assert_same_mailbox(lab.source, lab.target)


def test_special_use_folders_map_to_the_targets_own(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    # The target already has "Sent" (\Sent); the source calls its sent folder "Sent Messages" (\Sent).
    imapfill.create_folder(target_dovecot, "alice", "Sent")
    imapfill.create_folder(source_dovecot, "alice", "Sent Messages")
    imapfill.create_folder(source_dovecot, "alice", "Sent Messages.2019")
    imapfill.append(source_dovecot, "alice", "Sent Messages", message("sent"))
    imapfill.append(source_dovecot, "alice", "Sent Messages.2019", message("sent long ago"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)

    assert lab.run()[0] == 0

    target = imapfill.folder_snapshot(target_dovecot, "alice", master=True)
    assert [m[0] for m in target["Sent"]] == [message("sent")]
    assert [m[0] for m in target["Sent.2019"]] == [message("sent long ago")]
    assert "Sent Messages" not in target


def test_folder_rules_rename_and_exclude(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    for folder in ["Old", "Old.Sub", "Spam"]:
        imapfill.create_folder(source_dovecot, "alice", folder)
        imapfill.append(source_dovecot, "alice", folder, message(f"in {folder}"))
    lab = make_lab(
        tmp_path / "lab",
        source_dovecot,
        target_dovecot,
        tail='[folders]\nrename = { "Old" = "Legacy/Old" }\nexclude = ["spam"]\n',
    )

    code, summary = lab.run()
    assert summary["totals"]["copied"] == 2  # Spam left out

    assert code == 0
    target = imapfill.folder_snapshot(target_dovecot, "alice", master=True)
    # "Legacy" itself is only a \Noselect placeholder, as "Old"'s parent would be on the source.
    assert set(target) == {"INBOX", "Legacy.Old", "Legacy.Old.Sub"}
    verify_code, report = lab.verify()
    assert verify_code == 0
    assert report["totals"]["excluded"] == 1


def test_separator_and_prefix_translation(tmp_path: Path, dovecot_factory: object) -> None:
    # Source: "/" separator, names may contain "."; target: Maildir++ with "." separator.
    fs_layout = "namespace inbox {\n  separator = /\n}\n"
    source = dovecot_factory(mail_location="maildir:~/Maildir:LAYOUT=fs", extra_conf=fs_layout)  # type: ignore[operator]
    target = dovecot_factory()  # type: ignore[operator]
    imapfill.create_folder(source, "alice", "Clients/v1.2 release")
    imapfill.create_folder(source, "alice", "Clients/Ünïcode/deep")
    imapfill.append(source, "alice", "Clients/v1.2 release", message("dotted"))
    imapfill.append(source, "alice", "Clients/Ünïcode/deep", message("deep"))
    lab = make_lab(tmp_path / "lab", source, target)

    code, summary = lab.run()

    assert code == 0, summary
    target_folders = imapfill.folder_snapshot(target, "alice", master=True)
    assert [m[0] for m in target_folders["Clients.v1_2 release"]] == [message("dotted")]
    assert [m[0] for m in target_folders["Clients.Ünïcode.deep"]] == [message("deep")]


def test_many_mailboxes_in_parallel(tmp_path: Path, dovecot_factory: object) -> None:
    users = {f"user{i}": f"pw{i}" for i in range(6)}
    source = dovecot_factory(users=users)  # type: ignore[operator]
    target = dovecot_factory(users=users)  # type: ignore[operator]
    for index, user in enumerate(users):
        for n in range(index + 3):
            imapfill.append(source, user, "INBOX", message(f"{user} {n}"))
    lab = make_lab(tmp_path / "lab", source, target, mailboxes=tuple((u, u, "full") for u in users))

    code, summary = lab.run("full", "--workers", "4")

    assert code == 0
    assert summary["totals"]["copied"] == sum(i + 3 for i in range(6))
    for user in users:
        assert_same_mailbox(source, target, user)

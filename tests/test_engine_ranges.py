"""A folder larger than one listing range (runners/connectors/ranged.py): listed, looked up in the
ledger and copied a range of UIDs at a time, with every guarantee a whole listing had."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import Lab, append_many, assert_same_mailbox, doveadm, make_lab, run_killed
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.connectors.imap_source import ImapSource
from runners.connectors.ranged import LIST_CHUNK, RangedSource, UidRange, cut
from runners.imap.wire import ImapConnection

#: Three listing ranges and a bit: every range boundary is crossed.
TOTAL = 2 * LIST_CHUNK + 500
FLAGS = [(), ("\\Seen",), ("\\Seen", "\\Flagged"), ("$Work",)]


def bodies(count: int, tag: str = "r") -> list[bytes]:
    # Every seventh message repeats the one before: byte-identical duplicates are distinct messages.
    out: list[bytes] = []
    for n in range(count):
        out.append(out[-1] if n % 7 == 6 else message(f"{tag} {n}", f"range test {n}\n" + "x" * (n % 300)))
    return out


def fill_big(server: DovecotServer, folder: str, count: int = TOTAL) -> None:
    if folder != "INBOX":
        imapfill.create_folder(server, "alice", folder)
    all_bodies = bodies(count)
    for i, flags in enumerate(FLAGS):  # flags by quarter, so every range holds several kinds
        part = all_bodies[i * count // len(FLAGS) : (i + 1) * count // len(FLAGS)]
        append_many(server, "alice", folder, part, flags=flags)


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer) -> Lab:
    fill_big(source_dovecot, "Big")
    return make_lab(tmp_path / "lab", source_dovecot, target_dovecot)


def imap_source(server: DovecotServer) -> ImapSource:
    conn = ImapConnection(server.host, server.imap_port, security="plain", timeout=30)
    conn.connect()
    conn.authenticate_plain(server.master_user, server.master_password, authzid="alice")
    return ImapSource(conn)


def test_ranges_cut_a_folder_with_gaps_into_runs_that_cover_every_message(
    source_dovecot: DovecotServer,
) -> None:
    imapfill.create_folder(source_dovecot, "alice", "Gaps")
    append_many(source_dovecot, "alice", "Gaps", bodies(3000, "g"))
    with imapfill.connect(source_dovecot, "alice", master=True) as client:
        client.select_folder("Gaps")
        client.delete_messages(list(range(2, 3001, 3)))  # a third of the UIDs gone, spread out
        client.expunge()
    source = imap_source(source_dovecot)
    try:
        folder = next(f for f in source.list_folders() if f.raw_name == "Gaps")
        assert isinstance(source, RangedSource)
        state, whole = source.list_messages(folder)
        assert state.messages == len(whole) == 2000

        ranges = source.uid_ranges(folder, source.open_folder(folder), size=300)
        listed = [meta for uids in ranges for meta in source.list_range(folder, uids)]

        # Contiguous from UID 1, the last one open-ended: nothing can fall between two ranges.
        assert ranges[0].low == 1 and ranges[-1].high is None
        assert all(a.high is not None and a.high + 1 == b.low for a, b in itertools.pairwise(ranges))
        assert len(ranges) == 7  # 2,000 messages in runs of 300
        assert listed == whole  # the same metadata, in the same order, each message once
        # Past the last message, "n:*" answers with the highest one (RFC 3501): it is not listed again.
        assert source.list_range(folder, UidRange(5000, None)) == []
    finally:
        source.close()


def test_an_empty_folder_has_no_ranges_and_a_small_one_has_one(source_dovecot: DovecotServer) -> None:
    imapfill.create_folder(source_dovecot, "alice", "Empty")
    append_many(source_dovecot, "alice", "INBOX", bodies(5, "s"))
    source = imap_source(source_dovecot)
    try:
        folders = {f.raw_name: f for f in source.list_folders()}
        empty, inbox = folders["Empty"], folders["INBOX"]
        assert source.uid_ranges(empty, source.open_folder(empty)) == []
        assert source.uid_ranges(inbox, source.open_folder(inbox)) == [UidRange(1, None)]
        assert len(source.list_range(inbox, UidRange(1, None))) == 5
    finally:
        source.close()


def test_a_folder_of_several_ranges_is_copied_once_and_later_passes_are_deltas(lab: Lab) -> None:
    code, summary = lab.run()
    assert code == 0, summary
    assert summary["totals"]["copied"] == TOTAL
    assert summary["totals"]["messages_total"] == TOTAL
    assert_same_mailbox(lab.source, lab.target)

    # Flags changed in three different ranges, and new mail: a delta pass copies only the new
    # messages and follows the flags; the rest is recognised as copied, range by range.
    with imapfill.connect(lab.source, "alice", master=True) as client:
        client.select_folder("Big")
        client.add_flags([5, LIST_CHUNK + 10, TOTAL - 3], ["\\Answered"])
    append_many(lab.source, "alice", "Big", [message(f"new {n}") for n in range(30)])

    code, summary = lab.run()

    assert code == 0, summary
    totals = summary["totals"]
    assert totals["copied"] == 30
    assert totals["flags_synced"] == 3
    assert totals["already_present"] == TOTAL
    assert totals["messages_total"] == TOTAL + 30
    assert_same_mailbox(lab.source, lab.target)
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report
    assert report["totals"]["ok"] == TOTAL + 30


def test_a_new_uidvalidity_on_a_folder_of_several_ranges_matches_by_content(lab: Lab) -> None:
    assert lab.run()[0] == 0
    # A new UIDVALIDITY (as after the server rebuilt its index): every UID is new to the ledger.
    changed = doveadm(lab.source, "mailbox", "update", "-u", "alice", "--uid-validity", "777", "Big")
    assert changed.returncode == 0, changed.stderr
    append_many(lab.source, "alice", "Big", [message("after the change")])

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["matched_by_content"] == TOTAL
    assert summary["totals"]["copied"] == 1
    with imapfill.connect(lab.target, "alice", master=True) as client:
        assert client.folder_status("Big", [b"MESSAGES"])[b"MESSAGES"] == TOTAL + 1  # no duplicate
    verify_code, report = lab.verify("pilot", "--deep")  # each source message on its own target copy
    assert verify_code == 0, report
    assert report["totals"]["ok"] == TOTAL + 1


def test_cuts_make_contiguous_ranges_ending_open() -> None:
    assert cut([]) == [UidRange(1, None)]
    assert cut([4, 9]) == [UidRange(1, 4), UidRange(5, 9), UidRange(10, None)]
    assert UidRange(3, 5).holds(3) and UidRange(3, 5).holds(5) and not UidRange(3, 5).holds(6)
    assert UidRange(7, None).holds(10**9) and not UidRange(7, None).holds(6)


@pytest.mark.parametrize("fault", ["after-append:13", "before-append:17"])
def test_killed_in_a_later_range_then_rerun_ends_as_an_uninterrupted_run(lab: Lab, fault: str) -> None:
    # Past the first range (2,000 messages, 10 batches of 200): the first range is in the ledger,
    # the kill lands among the next one's batches; the rerun lists every range again.
    run_killed(lab, fault)

    code, summary = lab.run()

    assert code == 0, summary
    totals = summary["totals"]
    # What the killed run appended is already there (those it never recorded found by content,
    # and counted as such too); the rest is copied now, nothing twice.
    assert totals["copied"] + totals["already_present"] == TOTAL
    assert totals["matched_by_content"] <= totals["already_present"]
    assert_same_mailbox(lab.source, lab.target)
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report
    assert report["totals"]["ok"] == TOTAL

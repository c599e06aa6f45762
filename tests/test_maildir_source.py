"""MaildirSource against hand-built Dovecot and Courier Maildir++ trees (filesystem only), plus
one cross-check against a Maildir that a real Dovecot wrote."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.connectors.maildir_source import (
    MaildirSource,
    imap_utc_date,
    open_maildir_source,
    parse_uidlist,
)
from runners.errors import CommandError, ConnectError
from runners.model import FetchedMessage, FetchFailure, FolderInfo, FolderState, MessageMeta

T0 = 1_700_000_000  # 14-Nov-2023 22:13:20 UTC
T0_IMAP = "14-Nov-2023 22:13:20 +0000"


def body(n: int, eol: bytes = b"\r\n") -> bytes:
    lines = [b"From: a@example.test", b"Subject: message %d" % n, b"", b"body %d" % n, b".dot line"]
    return eol.join(lines) + eol


def maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def put(folder: Path, sub: str, name: str, data: bytes, mtime: int = T0) -> Path:
    path = folder / sub / name
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def s_name(base: str, data: bytes, info: str | None = None) -> str:
    """A Dovecot-style name carrying ,S= (and ,W=) for ``data``."""
    name = f"{base},S={len(data)},W={len(data)}"
    return name if info is None else f"{name}:2,{info}"


def by_key(metas: list[MessageMeta]) -> dict[str, MessageMeta]:
    return {m.key: m for m in metas}


def folder_named(src: MaildirSource, *path: str) -> FolderInfo:
    return next(f for f in src.list_folders() if f.path == path)


@pytest.fixture
def dovecot_tree(tmp_path: Path) -> Path:
    root = maildir(tmp_path / "Maildir")
    (root / "dovecot-keywords").write_text("0 $Junk\n1 $NonJunk\n3 Project-X\n")
    put(root, "cur", s_name("1700000001.M1P1.mx", body(1), "FSab"), body(1))
    put(root, "cur", "1700000002.M2P1.mx:2,PRT", body(2, b"\n"), mtime=T0 + 3600)  # no S=, bare LF
    put(root, "new", s_name("1700000003.M3P1.mx", body(3)), body(3))  # new/: no info, unseen
    put(root, "cur", "1700000004.M4P1.mx:2,Sd", body(4))  # "d" = keyword 3
    put(root, "cur", "1700000005.M5P1.mx:2,Sz", body(5))  # "z": not in dovecot-keywords
    for raw in (".Archive", ".Archive.2023", ".Entw&APw-rfe", ".&ZeVnLIqe-", ".Projects.Alpha", ".Sent"):
        maildir(root / raw)
    put(root / ".Archive.2023", "cur", "1690000000.M9P9.mx:2,S", body(9))
    (root / ".notes").mkdir()  # no cur/: not a folder
    (root / ".hidden-file").write_text("x")
    (root / "dovecot-uidvalidity").write_text("65000000")
    return root


def test_open_rejects_missing_root_and_non_maildir(tmp_path: Path) -> None:
    with pytest.raises(ConnectError) as missing:
        open_maildir_source(tmp_path / "nope", "dovecot")
    assert "No such file or directory" in missing.value.server_text
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConnectError) as plain:
        open_maildir_source(tmp_path / "plain", "dovecot")
    assert "not a maildir" in plain.value.server_text
    assert plain.value.server == f"maildir:{tmp_path / 'plain'}"


def test_dovecot_folders_decode_modified_utf7_and_add_parents(dovecot_tree: Path) -> None:
    src = open_maildir_source(dovecot_tree, "dovecot")
    folders = src.list_folders()
    assert src.server == f"maildir:{dovecot_tree}"
    assert folders[0] == FolderInfo("INBOX", ("INBOX",), ".")
    by_path = {f.path: f for f in folders}
    assert set(by_path) == {
        ("INBOX",),
        ("Archive",),
        ("Archive", "2023"),
        ("Entwürfe",),
        ("日本語",),
        ("Projects",),
        ("Projects", "Alpha"),
        ("Sent",),
    }
    assert by_path[("Entwürfe",)].raw_name == ".Entw&APw-rfe"
    assert by_path[("日本語",)].raw_name == ".&ZeVnLIqe-"
    assert by_path[("Archive", "2023")].raw_name == ".Archive.2023"
    assert by_path[("Projects",)] == FolderInfo(".Projects", ("Projects",), ".", selectable=False)
    assert all(f.special_use is None and f.separator == "." for f in folders)


def test_list_messages_flags_keywords_sizes_dates(dovecot_tree: Path) -> None:
    src = open_maildir_source(dovecot_tree, "dovecot")
    state, metas = src.list_messages(folder_named(src, "INBOX"))
    assert [m.uid for m in metas] == [1, 2, 3, 4, 5]  # base-name order without a UID list
    m = by_key(metas)
    first = m[f"1700000001.M1P1.mx,S={len(body(1))},W={len(body(1))}"]
    assert first.flags == ("\\Flagged", "\\Seen", "$Junk", "$NonJunk")
    assert first.size == len(body(1))
    assert first.internaldate == T0_IMAP
    second = m["1700000002.M2P1.mx"]
    assert second.flags == ("$Forwarded", "\\Answered", "\\Deleted")
    assert second.size == len(body(2, b"\n"))  # file size when there is no S=
    assert second.internaldate == "14-Nov-2023 23:13:20 +0000"
    assert m[f"1700000003.M3P1.mx,S={len(body(3))},W={len(body(3))}"].flags == ()  # new/: unseen
    assert m["1700000004.M4P1.mx"].flags == ("\\Seen", "Project-X")
    assert m["1700000005.M5P1.mx"].flags == ("\\Seen",)  # unknown keyword letter: no flag...
    assert state.messages == 5 and state.uidnext == 6 and state.highestmodseq is None
    assert 0 < state.uidvalidity < 2**32
    # ...but the listing says so, naming the message: the copy goes without it.
    (note,) = src.listing_notes(folder_named(src, "INBOX"))
    assert (note.what, note.uids) == ("the Maildir keyword letter 'z'", (5,))
    assert note.why == "the folder's dovecot-keywords names no keyword for it"


def test_listing_notes_each_keyword_letter_no_flag_can_carry(tmp_path: Path) -> None:
    """A letter without a name (the file missing, or naming no keyword for it) and a name with a
    space: each is a note with its messages; named letters and system flags are none."""
    root = tmp_path / "mail"
    (root / ".Plain").mkdir(parents=True)
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(exist_ok=True)
        (root / ".Plain" / sub).mkdir()
    (root / "dovecot-keywords").write_text("0 $Junk\n1 two words\n")
    put(root, "cur", "1700000001.M1P1.mx:2,Sab", body(1))
    put(root, "cur", "1700000002.M2P1.mx:2,Fbc", body(2))
    put(root, "cur", "1700000003.M3P1.mx:2,ac", body(3))
    put(root / ".Plain", "cur", "1700000004.M4P1.mx:2,RSa", body(4))  # this folder has no dovecot-keywords
    src = open_maildir_source(root, "dovecot")
    inbox, plain = folder_named(src, "INBOX"), folder_named(src, "Plain")

    _, metas = src.list_messages(inbox)
    assert [m.flags for m in metas] == [("\\Seen", "$Junk"), ("\\Flagged",), ("$Junk",)]
    notes = {n.what: (n.why, n.uids) for n in src.listing_notes(inbox)}
    assert notes == {
        "the Maildir keyword letter 'b'": (
            "the folder's dovecot-keywords names it 'two words', which holds a space or control character "
            "no IMAP flag can",
            (1, 2),
        ),
        "the Maildir keyword letter 'c'": ("the folder's dovecot-keywords names no keyword for it", (2, 3)),
    }
    src.list_messages(plain)
    (note,) = src.listing_notes(plain)
    assert (note.what, note.why, note.uids) == (
        "the Maildir keyword letter 'a'",
        "the folder's dovecot-keywords is missing, so it names no keyword",
        (1,),
    )
    assert src.listing_notes(inbox)  # each folder keeps its own


def test_keys_are_base_names_stable_across_flag_changes(dovecot_tree: Path) -> None:
    src = open_maildir_source(dovecot_tree, "dovecot")
    inbox = folder_named(src, "INBOX")
    before = [m.key for m in src.list_messages(inbox)[1]]
    os.rename(
        dovecot_tree / "cur" / "1700000002.M2P1.mx:2,PRT", dovecot_tree / "cur" / "1700000002.M2P1.mx:2,S"
    )
    after_state, after = src.list_messages(inbox)
    assert [m.key for m in after] == before
    assert by_key(after)["1700000002.M2P1.mx"].flags == ("\\Seen",)
    again = open_maildir_source(dovecot_tree, "dovecot").folder_states([inbox])[inbox.raw_name]
    assert again == after_state  # folder_states agrees with list_messages; uidvalidity is stable


def test_folder_states_are_cheap_counts_and_map_errors(dovecot_tree: Path) -> None:
    src = open_maildir_source(dovecot_tree, "dovecot")
    folders = src.list_folders()
    broken = maildir(dovecot_tree / ".Broken")
    (broken / "new").rmdir()
    (broken / "new").write_text("not a directory")
    broken_info = FolderInfo(".Broken", ("Broken",), ".")
    states = src.folder_states([*folders, broken_info])
    inbox = states["INBOX"]
    assert isinstance(inbox, FolderState) and inbox.messages == 5 and inbox.uidnext == 6
    archived = states[".Archive.2023"]
    assert isinstance(archived, FolderState) and archived.messages == 1
    sent = states[".Sent"]
    assert isinstance(sent, FolderState) and (sent.uidnext, sent.messages) == (1, 0)
    uidvalidities = {s.uidvalidity for s in states.values() if isinstance(s, FolderState)}
    assert len(uidvalidities) == len(folders) - 1  # one per folder (".Projects" has no directory)
    assert isinstance(states[".Projects"], CommandError)
    error = states[".Broken"]
    assert isinstance(error, CommandError)
    assert error.server == f"maildir:{dovecot_tree}"
    assert error.operation == "list .Broken"
    assert "Not a directory" in error.server_text
    with pytest.raises(CommandError) as raised:
        src.list_messages(broken_info)
    assert "Not a directory" in raised.value.server_text


def test_fetch_is_byte_for_byte_and_reports_each_failure(dovecot_tree: Path) -> None:
    inbox_dir = dovecot_tree
    bad_size = body(6)
    put(inbox_dir, "cur", f"1700000006.M6P1.mx,S={len(bad_size) + 7}:2,S", bad_size)
    (inbox_dir / "cur" / "1700000007.M7P1.mx:2,S").mkdir()  # a directory where a message should be
    (inbox_dir / "cur" / "1700000008.M8P1.mx:2,S").symlink_to(inbox_dir / "gone")  # dangling link
    src = open_maildir_source(dovecot_tree, "dovecot")
    inbox = folder_named(src, "INBOX")
    _, metas = src.list_messages(inbox)
    assert len(metas) == 8
    results = list(src.fetch(inbox, metas))
    assert [r.meta for r in results] == metas  # each exactly once, in order
    fetched = {r.meta.key: r.body for r in results if isinstance(r, FetchedMessage)}
    failed = {r.meta.key: r.reason for r in results if isinstance(r, FetchFailure)}
    assert fetched[f"1700000001.M1P1.mx,S={len(body(1))},W={len(body(1))}"] == body(1)
    # Stored with bare LF, served with CRLF, as the server itself would serve it over IMAP.
    assert fetched["1700000002.M2P1.mx"] == body(2, b"\n").replace(b"\n", b"\r\n")
    assert len(fetched) == 5
    size_reason = failed[f"1700000006.M6P1.mx,S={len(bad_size) + 7}"]
    assert f"S={len(bad_size) + 7}" in size_reason and f"{len(bad_size)} bytes" in size_reason
    assert size_reason.startswith("size mismatch")
    assert "Is a directory" in failed["1700000007.M7P1.mx"]
    assert "No such file or directory" in failed["1700000008.M8P1.mx"]


def test_fetch_follows_renames_and_reports_expunged(dovecot_tree: Path) -> None:
    src = open_maildir_source(dovecot_tree, "dovecot")
    inbox = folder_named(src, "INBOX")
    _, metas = src.list_messages(inbox)
    # Another client sets \Seen on the new message and expunges message 4 after our listing.
    new_name = s_name("1700000003.M3P1.mx", body(3))
    os.rename(dovecot_tree / "new" / new_name, dovecot_tree / "cur" / f"{new_name}:2,S")
    (dovecot_tree / "cur" / "1700000004.M4P1.mx:2,Sd").unlink()
    results = {r.meta.key: r for r in src.fetch(inbox, metas)}
    moved = results[new_name.split(":")[0]]
    assert isinstance(moved, FetchedMessage) and moved.body == body(3)
    gone = results["1700000004.M4P1.mx"]
    assert isinstance(gone, FetchFailure) and "no longer in INBOX" in gone.reason
    assert sum(isinstance(r, FetchedMessage) for r in results.values()) == 4


def test_fetch_without_listing_first(dovecot_tree: Path) -> None:
    src = open_maildir_source(dovecot_tree, "dovecot")
    archive = folder_named(src, "Archive", "2023")
    _, metas = src.list_messages(archive)
    fresh = open_maildir_source(dovecot_tree, "dovecot")
    [result] = fresh.fetch(archive, metas)
    assert isinstance(result, FetchedMessage) and result.body == body(9)
    assert result.meta.flags == ("\\Seen",)


def test_dovecot_uidlist_gives_uids_and_uidnext(dovecot_tree: Path) -> None:
    (dovecot_tree / "dovecot-uidlist").write_text(
        "3 V1699999999 N40 G3085f01b7f11094c501100008c4a11c1\n"
        f"31 :1700000004.M4P1.mx:2,S\n"
        f"17 W812 :1700000002.M2P1.mx:2,PRT\n"
        f"25 :1700000001.M1P1.mx,S={len(body(1))},W={len(body(1))}:2,FSab\n"
        "33 :1699999999.expunged.mx:2,S\n"
    )
    src = open_maildir_source(dovecot_tree, "dovecot")
    inbox = folder_named(src, "INBOX")
    state, metas = src.list_messages(inbox)
    assert [(m.uid, m.key.split(",")[0]) for m in metas] == [
        (17, "1700000002.M2P1.mx"),
        (25, "1700000001.M1P1.mx"),
        (31, "1700000004.M4P1.mx"),
        (40, "1700000003.M3P1.mx"),  # not in the list yet: from N on, by base name
        (41, "1700000005.M5P1.mx"),
    ]
    assert state.uidnext == 40 and state.messages == 5
    assert src.folder_states([inbox])["INBOX"] == state
    # Keys and UIDVALIDITY don't depend on the UID list, so its appearance changes nothing for them.
    (dovecot_tree / "dovecot-uidlist").unlink()
    plain_state, plain = src.list_messages(inbox)
    assert plain_state.uidvalidity == state.uidvalidity
    assert {m.key for m in plain} == {m.key for m in metas}


def test_courier_layout(tmp_path: Path) -> None:
    root = maildir(tmp_path / "Maildir")
    put(root, "cur", "1600000000.1234.courier:2,RS", body(1))
    put(root, "cur", "1600000001.1235.courier:2,Sa", body(2))  # keyword letter: ignored for Courier
    put(root, "new", "1600000002.1236.courier", body(3))
    (root / "courierimapuiddb").write_text("1 1600000000 12\n7 1600000000.1234.courier:2,S\n")
    (root / "dovecot-keywords").write_text("0 $Junk\n")  # stale Dovecot file: not Courier's store
    for raw in (".Sent", ".Sent.2022", ".&AMk-t&AOk-"):
        maildir(root / raw)
    put(root / ".Sent.2022", "cur", f"1500000000.1.courier,S={len(body(4))}:2,S", body(4))
    src = open_maildir_source(root, "courier")
    paths = {f.path: f.raw_name for f in src.list_folders()}
    assert paths == {
        ("INBOX",): "INBOX",
        ("Sent",): ".Sent",
        ("Sent", "2022"): ".Sent.2022",
        ("Été",): ".&AMk-t&AOk-",
    }
    state, metas = src.list_messages(folder_named(src, "INBOX"))
    assert [(m.uid, m.key, m.flags) for m in metas] == [
        (7, "1600000000.1234.courier", ("\\Answered", "\\Seen")),
        (12, "1600000001.1235.courier", ("\\Seen",)),
        (13, "1600000002.1236.courier", ()),
    ]
    assert state.uidnext == 12
    sent = folder_named(src, "Sent", "2022")
    _, [meta] = src.list_messages(sent)
    assert meta.size == len(body(4)) and meta.uid == 1
    [fetched] = src.fetch(sent, [meta])
    assert isinstance(fetched, FetchedMessage) and fetched.body == body(4)


def test_courier_keywords_come_from_its_list_and_its_newest_changes(tmp_path: Path) -> None:
    """Courier keeps keywords in ``courierimapkeywords/``: ``:list`` (names, an empty line, then
    ``base:indexes``) and change files that hold a message's whole list, the newest winning."""
    root = maildir(tmp_path / "Maildir")
    names = [f"160000000{n}.{n}.courier" for n in range(6)]
    for n, base in enumerate(names):
        put(root, "cur", f"{base}:2,S", body(n))
    kw = root / "courierimapkeywords"
    kw.mkdir()
    (kw / ":list").write_text(
        "$Label1\nJunk\nProject-[X]\nTwo words\n\n"
        f"{names[0]}:0 1 3\n{names[1]}:2\n{names[2]}:1\n{names[3]}:0\nno colon here\n{names[4]}:7 1\n"
    )
    (kw / f".3.{names[2]}").write_text("NonJunk\n")  # older change
    (kw / f".12.{names[2]}").write_text("$Label2\nNonJunk\n")  # newest numbered change wins
    (kw / f".40.{names[3]}").write_text("")  # every keyword removed
    (kw / f".9.{names[5]}").write_text("$Label1\n")
    (kw / names[5]).write_text("$Label3\n")  # a plain name is newer than any numbered one
    (kw / f".tmp.1600000000.x.{names[0]}").write_text("Junk\n")  # still being written: not a change
    src = open_maildir_source(root, "courier")
    _, metas = src.list_messages(folder_named(src, "INBOX"))
    assert {m.key: m.flags for m in metas} == {
        names[0]: ("\\Seen", "$Label1", "Junk"),
        names[1]: ("\\Seen", "Project-[X]"),  # not an atom: the target's verdict, not the reader's
        names[2]: ("\\Seen", "$Label2", "NonJunk"),
        names[3]: ("\\Seen",),
        names[4]: ("\\Seen", "Junk"),  # an index past the list is skipped, as Courier does
        names[5]: ("\\Seen", "$Label3"),
    }
    # The Dovecot layout never reads Courier's store.
    dovecot = open_maildir_source(root, "dovecot")
    _, plain = dovecot.list_messages(folder_named(dovecot, "INBOX"))
    assert all(m.flags == ("\\Seen",) for m in plain)


def test_parse_uidlist_versions() -> None:
    v3 = parse_uidlist(b"3 V7 N9 Gabc\n1 :a.b:2,S\n2 W10 P+x :c.d\nbroken\n4 W1 no-colon\n")
    assert v3 is not None and (v3.uidvalidity, v3.nextuid) == (7, 9)
    assert v3.uids == {"a.b": 1, "c.d": 2}
    v1 = parse_uidlist(b"1 1234 5\n3 x.y:2,FS\n")
    assert v1 is not None and (v1.uidvalidity, v1.nextuid, v1.uids) == (1234, 5, {"x.y": 3})
    assert parse_uidlist(b"") is None
    assert parse_uidlist(b"2 junk\n") is None
    assert parse_uidlist(b"3 N9\n") is None  # no UIDVALIDITY


def test_imap_utc_date_is_english_and_padded() -> None:
    assert imap_utc_date(T0) == T0_IMAP
    assert imap_utc_date(0) == "01-Jan-1970 00:00:00 +0000"
    assert imap_utc_date(1_709_251_199.9) == "29-Feb-2024 23:59:59 +0000"


def test_reads_what_dovecot_itself_wrote(source_dovecot: DovecotServer) -> None:
    """Cross-check against a real Dovecot Maildir: UIDs, flags, keywords, dates and names agree
    with what the same server reports over IMAP."""
    name = "Entwürfe.日本語"  # hierarchy under a non-ASCII parent
    imapfill.create_folder(source_dovecot, "alice", name)
    when = datetime(2023, 11, 14, 23, 13, 20, tzinfo=timezone(timedelta(hours=1)))
    for n, flags in enumerate(
        [("\\Seen", "\\Flagged"), ("$Junk", "\\Answered"), (), ("$Forwarded", "Project-X")]
    ):
        imapfill.append(source_dovecot, "alice", name, body(n), flags, when + timedelta(days=n))
    imap = imapfill.folder_snapshot(source_dovecot, "alice")[name]

    src = open_maildir_source(source_dovecot.maildir("alice"), "dovecot")
    folder = folder_named(src, "Entwürfe", "日本語")
    assert folder.raw_name == ".Entw&APw-rfe.&ZeVnLIqe-"
    assert not folder_named(src, "Entwürfe").selectable  # Dovecot made no directory for the parent
    state, metas = src.list_messages(folder)
    assert state.messages == 4 and [m.uid for m in metas] == [1, 2, 3, 4]  # from dovecot-uidlist
    assert src.folder_states([folder])[folder.raw_name] == state
    fetched = list(src.fetch(folder, metas))
    for meta, result, (imap_body, imap_flags, imap_date) in zip(metas, fetched, imap, strict=True):
        assert set(meta.flags) == imap_flags
        assert meta.internaldate == imap_date.astimezone(UTC).strftime("%d-%b-%Y %H:%M:%S +0000")
        assert isinstance(result, FetchedMessage)
        # Dovecot stores LF line endings (mail_save_crlf=no); IMAP shows CRLF.
        assert result.body == imap_body  # what the server itself serves over IMAP, byte for byte
        assert meta.size == len(result.body)


def test_same_base_name_in_cur_and_new_is_listed_once(tmp_path: Path) -> None:
    root = maildir(tmp_path / "Maildir")
    put(root, "new", "1700000001.M1P1.mx", body(1))
    os.link(root / "new" / "1700000001.M1P1.mx", root / "cur" / "1700000001.M1P1.mx:2,S")  # mid-move
    src = open_maildir_source(root)
    state, [meta] = src.list_messages(folder_named(src, "INBOX"))
    assert meta.flags == ("\\Seen",) and state.messages == 1

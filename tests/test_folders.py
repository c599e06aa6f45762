"""Folder mapping rules, without servers (the engine tests cover them on real Dovecot)."""

from __future__ import annotations

from runners.folders import plan_folders, source_path, target_wire_name
from runners.model import FolderInfo, TargetLayout
from runners.plan.model import FolderRules


def folder(name: str, sep: str = ".", special: str | None = None, prefix: str = "") -> FolderInfo:
    return FolderInfo(name, source_path(name, sep, prefix), sep, special)


def test_source_paths_strip_the_namespace_and_decode_utf7() -> None:
    assert source_path("INBOX.Entw&APw-rfe.2024", ".", "INBOX.") == ("Entwürfe", "2024")
    assert source_path("inbox", ".", "INBOX.") == ("INBOX",)
    # Not valid modified UTF-7 (a bare "&Zz"): kept exactly as the server spelled it.
    assert source_path("Broken&-name&Zz", "/", "") == ("Broken&-name&Zz",)


def test_target_names_translate_separator_and_encode() -> None:
    assert target_wire_name(("Entwürfe", "a/b"), "/", "") == (
        "Entw&APw-rfe/a_b",
        ("'a/b' contains the target separator '/': renamed 'a_b'",),
    )
    assert target_wire_name(("INBOX", "Sub"), ".", "INBOX.") == ("INBOX.Sub", ())
    assert target_wire_name(("Projects",), ".", "INBOX.")[0] == "INBOX.Projects"


def test_special_use_maps_by_attribute_or_name_and_children_follow() -> None:
    folders = [
        folder("Sent Messages", special="\\Sent"),
        folder("Sent Messages.2019"),
        folder("Papierkorb"),
    ]
    mapped = plan_folders(
        folders,
        FolderRules(),
        TargetLayout("/", "", {"\\Sent": "Sent Items"}),
    )
    assert [m.target_wire for m in mapped][:2] == ["Sent Items", "Sent Items/2019"]
    trash = plan_folders(
        [folder("Papierkorb")],
        FolderRules(special={"trash": "Deleted Items"}),
        TargetLayout("/", "", {}),
    )
    assert trash[0].target_wire == "Deleted Items"


def test_renames_win_and_excludes_are_case_insensitive() -> None:
    rules = FolderRules(rename={"Old": "Legacy/Old", "Old/Keep": "Kept"}, exclude=("spam", "Archive/*"))
    mapped = plan_folders(
        [folder("Old"), folder("Old.Keep"), folder("Old.Other"), folder("SPAM"), folder("Archive.2020")],
        rules,
        TargetLayout(".", "", {}),
    )
    assert [(m.target_wire, m.excluded) for m in mapped] == [
        ("Legacy.Old", None),
        ("Kept", None),
        ("Legacy.Old.Other", None),
        ("", "excluded by the plan"),
        ("", "excluded by the plan"),
    ]

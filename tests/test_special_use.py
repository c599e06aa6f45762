"""One list of special-use folders (runners/folders.py), read the same way from a source's and a
target's LIST, whatever case the server spells the attributes in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corpus import message
from dovecot_lab import make_lab
from servers import imapfill

from runners.folders import SPECIAL_NAMES
from runners.plan import loader
from runners.special_use import SPECIAL_KEYS, SPECIAL_USES, SPECIAL_VIEWS, special_uses_in


def test_the_plan_keys_come_from_the_one_list() -> None:
    assert loader.SPECIAL_USES == tuple(SPECIAL_KEYS) == ("sent", "drafts", "trash", "junk", "archive")
    assert list(SPECIAL_KEYS.values()) == list(SPECIAL_USES)
    assert not set(SPECIAL_VIEWS) & set(SPECIAL_USES)
    assert set(SPECIAL_NAMES.values()) == set(SPECIAL_USES)  # a name for every use, and no other use


def test_attributes_in_any_case_and_folder_uses_before_views() -> None:
    assert special_uses_in(("\\HasNoChildren", "\\SENT")) == ["\\Sent"]
    # Before, the source took the first attribute (a view, so not mapped) while the target took \Archive.
    assert special_uses_in(("\\flagged", "\\archive")) == ["\\Archive", "\\Flagged"]
    assert special_uses_in(("\\All",)) == ["\\All"]
    assert special_uses_in(("\\Noselect", "\\Important", "$Sent")) == []


def test_source_and_target_attributes_in_odd_case_map_the_folders(
    tmp_path: Path, dovecot_factory: Any
) -> None:
    # Folder names no name table knows: only the attributes can tell what they are.
    source = dovecot_factory(
        extra_conf="""
namespace inbox {
  mailbox Ausgang {
    special_use = \\sent
  }
  mailbox Markiert {
    special_use = \\FLAGGED \\archive
  }
  mailbox Alles {
    special_use = \\All
  }
}
"""
    )
    target = dovecot_factory(
        extra_conf="""
namespace inbox {
  mailbox Postausgang {
    auto = create
    special_use = \\SENT
  }
  mailbox Ablage {
    auto = create
    special_use = \\Archive
  }
}
"""
    )
    for name in ("Ausgang", "Markiert", "Alles"):
        imapfill.create_folder(source, "alice", name)
        imapfill.append(source, "alice", name, message(f"in {name}"))
    lab = make_lab(tmp_path / "lab", source, target)

    code, summary = lab.run()

    assert code == 0, summary
    landed = {
        folder: [body for body, _, _ in messages]
        for folder, messages in imapfill.folder_snapshot(target, "alice", master=True).items()
        if messages
    }
    assert landed == {
        "Postausgang": [message("in Ausgang")],
        "Ablage": [message("in Markiert")],
        "Alles": [message("in Alles")],  # a view is copied as a folder of its own name, never mapped
    }

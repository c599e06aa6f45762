"""Real Dovecot source into the strict EWS emulator with ``cutover run``: what each item got in its one
CreateItem, the folder plan on Exchange, and a rerun that creates nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from corpus import awkward_messages, message
from ews_lab import EWS_PASSWORD, TARGETS, EmulatorFactory, EwsLab, emulator_factory, make_ews_lab
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.connectors.exchange_props import KEY_PROPERTY_NAME, KEY_PROPERTY_SET

__all__ = ["emulator_factory"]

ARRIVED = datetime(2019, 5, 4, 3, 2, 1, tzinfo=timezone(timedelta(hours=2)))
#: flags on the source → what Exchange must keep
CASES: list[tuple[tuple[str, ...], dict[str, object]]] = [
    ((), {"read": False, "flag": None, "verb": None, "categories": [], "draft": False}),
    (("\\Seen",), {"read": True, "flag": None, "verb": None, "categories": [], "draft": False}),
    (("\\Seen", "\\Flagged"), {"read": True, "flag": 2, "verb": None, "categories": [], "draft": False}),
    (("\\Answered", "\\Seen"), {"read": True, "flag": None, "verb": 102, "categories": [], "draft": False}),
    (("$Forwarded",), {"read": False, "flag": None, "verb": 104, "categories": [], "draft": False}),
    (("\\Draft",), {"read": False, "flag": None, "verb": None, "categories": [], "draft": True}),
    (
        ("Work", "$label1", "\\Seen"),
        {"read": True, "flag": None, "verb": None, "categories": ["$label1", "Work"], "draft": False},
    ),
]


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory) -> EwsLab:
    for n, (flags, _) in enumerate(CASES):
        body = message(f"case {n}", f"body {n}")
        imapfill.append(
            source_dovecot, "alice", "INBOX", body, flags, ARRIVED + timedelta(days=n), master=True
        )
    for folder in ("Sent", "Projects", "Projects.2023", "projects", "Calendar", "Outbox"):
        imapfill.create_folder(source_dovecot, "alice", folder, master=True)
        imapfill.append(
            source_dovecot, "alice", folder, message(f"in {folder}"), ("\\Seen",), ARRIVED, master=True
        )
    for body in awkward_messages():
        imapfill.append(source_dovecot, "alice", "Projects.2023", body, (), ARRIVED, master=True)
    return make_ews_lab(tmp_path / "lab", source_dovecot, emulator_factory())


def by_subject(lab: EwsLab, folder: str = "inbox") -> dict[str, object]:
    return {item.subject: item for item in lab.items("alice", folder)}


def test_each_item_gets_its_state_dates_and_key_in_the_one_create(lab: EwsLab) -> None:
    code, summary = lab.run()

    assert code == 0, summary
    items = by_subject(lab)
    assert len(items) == len(CASES)
    for n, (flags, want) in enumerate(CASES):
        item = items[f"case {n}"]
        assert item.is_draft is want["draft"], flags  # type: ignore[attr-defined]
        assert item.is_read is want["read"], flags  # type: ignore[attr-defined]
        assert item.flag_status == want["flag"], flags  # type: ignore[attr-defined]
        assert item.last_verb == want["verb"], flags  # type: ignore[attr-defined]
        assert sorted(item.categories, key=str.lower) == want["categories"], flags  # type: ignore[attr-defined]
        # received = the source's INTERNALDATE, sent = the Date header, never the import time
        assert item.received == (ARRIVED + timedelta(days=n)).astimezone(UTC)  # type: ignore[attr-defined]
        assert item.sent == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)  # type: ignore[attr-defined]
        key = item.named(KEY_PROPERTY_SET, KEY_PROPERTY_NAME)  # type: ignore[attr-defined]
        assert isinstance(key, str) and len(key) == 32
    # Every property went with the MIME: nothing was set afterwards.
    assert "UpdateItem" not in lab.emulator.requests
    assert not lab.leaked()


def test_folders_land_on_distinguished_ones_and_exchange_names_are_respected(lab: EwsLab) -> None:
    code, summary = lab.run()

    assert code == 0, summary
    names = lab.emulator.folder_names(TARGETS["alice"])
    assert {"Sent Items", "Calendar (migrated)", "Outbox (migrated)"} <= set(names), names
    # "Projects" and "projects" are two folders on the source, one on Exchange unless renamed:
    # whichever the source lists second becomes "... (2)", and "Projects.2023" follows its parent.
    assert {"projects", "projects (2)"} <= {n.casefold() for n in names}, names
    (sub,) = [n for n in names if n.endswith("/2023")]
    assert sub.partition("/")[0].startswith("Projects"), names
    assert [i.subject for i in lab.items("alice", "sentitems")] == ["in Sent"]
    assert lab.items("alice", "outbox") == []  # nothing was put where Exchange would send it
    assert lab.items("alice", "calendar") == []
    assert len(lab.items("alice", sub)) == 1 + len(awkward_messages())


def test_a_rerun_creates_nothing(lab: EwsLab) -> None:
    code, summary = lab.run()
    assert code == 0, summary
    created = lab.emulator.requests.get("CreateItem", 0)
    total = sum(
        len(lab.emulator.items(TARGETS["alice"], f)) for f in lab.emulator.folder_names(TARGETS["alice"])
    )

    code, again = lab.run()

    assert code == 0, again
    assert again["totals"]["copied"] == 0
    assert lab.emulator.requests.get("CreateItem", 0) == created
    assert total == sum(
        len(lab.emulator.items(TARGETS["alice"], f)) for f in lab.emulator.folder_names(TARGETS["alice"])
    )
    assert EWS_PASSWORD not in str(again)


def test_a_run_asks_autodiscover_for_the_ews_url(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("found by autodiscover"), master=True)
    emulator = emulator_factory()
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator, target_extra="autodiscover = true")

    code, summary = lab.run()

    assert code == 0, summary
    assert [i.subject for i in lab.items()] == ["found by autodiscover"]


def test_a_plan_may_raise_batch_items_above_the_default(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    """batch_items is the plan's to set (100 is only its default): 130 messages of one folder go in
    one CreateItem when the plan allows 200, every one of them a non-draft with its key."""
    for n in range(130):
        imapfill.append(
            source_dovecot,
            "alice",
            "INBOX",
            message(f"bulk {n}", f"body {n}"),
            ("\\Seen",),
            ARRIVED,
            master=True,
        )
    lab = make_ews_lab(
        tmp_path / "lab",
        source_dovecot,
        emulator_factory(),
        target_extra="batch_items = 200",
        tail="[run]\nbatch_messages = 200\nbatch_bytes = 8388608\n",
    )

    code, summary = lab.run()

    assert code == 0, summary
    assert lab.emulator.requests.get("CreateItem", 0) == 1
    items = lab.items()
    assert sorted(i.subject for i in items) == sorted(f"bulk {n}" for n in range(130))
    assert not any(i.is_draft for i in items)

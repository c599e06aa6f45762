"""No duplicate, ever: ``kill -9`` between CreateItem's answer and the ledger, a connection dropped
after the server created the items, a throttling storm. Each rerun finds the uncertain items by the
key stored on them (FindItem with a restriction) before creating anything again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import run_killed
from ews_lab import TARGETS, EmulatorFactory, EwsLab, emulator_factory, ews_config, make_ews_lab
from servers import imapfill
from servers.dovecot import DovecotServer

from lab.ews import Mailbox
from runners.connectors.exchange_props import KEY_PROPERTY_NAME, KEY_PROPERTY_SET

__all__ = ["emulator_factory"]

TOTAL = 120


def fill(server: DovecotServer, user: str = "alice", count: int = TOTAL) -> None:
    with imapfill.connect(server, user, master=True) as client:
        client.multiappend(
            "INBOX", [{"msg": message(f"{user} {n}", f"body {n}"), "flags": ()} for n in range(count)]
        )


def keys(lab: EwsLab, user: str = "alice") -> Counter[str]:
    return Counter(str(i.named(KEY_PROPERTY_SET, KEY_PROPERTY_NAME)) for i in lab.items(user))


def assert_one_item_each(lab: EwsLab, user: str = "alice", count: int = TOTAL) -> None:
    found = keys(lab, user)
    assert sum(found.values()) == count, f"{sum(found.values())} items for {count} messages"
    assert len(found) == count and set(found.values()) == {1}
    assert sorted(i.subject for i in lab.items(user)) == sorted(f"{user} {n}" for n in range(count))


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory) -> EwsLab:
    fill(source_dovecot)
    return make_ews_lab(
        tmp_path / "lab",
        source_dovecot,
        emulator_factory(),
        target_extra="batch_items = 10",
        # One connection: the kill point's count below is exact (two would each have batches in flight).
        tail="[run]\nbatch_messages = 20\nconnections_per_mailbox = 1\n",
    )


@pytest.mark.parametrize("point", ["after-append", "before-append", "after-record"])
def test_killed_around_create_item_then_rerun_leaves_one_item_each(lab: EwsLab, point: str) -> None:
    run_killed(lab, f"{point}:3")
    before = sum(keys(lab).values())
    assert before == (20 if point == "before-append" else 30)  # batches of 10 (batch_items)

    code, summary = lab.run()

    assert code == 0, summary
    assert_one_item_each(lab)
    if point == "after-append":  # the unrecorded batch was found by its keys, not sent again
        assert summary["totals"]["matched_by_content"] == 10
    assert summary["totals"]["copied"] == TOTAL - before


def test_a_connection_dropped_after_the_server_created_the_items_makes_no_duplicate(lab: EwsLab) -> None:
    lab.emulator.inject("drop_after", "CreateItem", count=2)

    code, summary = lab.run()

    assert code == 0, summary
    assert_one_item_each(lab)
    code, again = lab.run()
    assert code == 0 and again["totals"]["copied"] == 0
    assert_one_item_each(lab)


def test_a_throttling_storm_completes_every_mailbox(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    # The server allows 1 request in flight for the account; the plan believes 27 and runs 3 workers:
    # ErrorServerBusy with BackOffMilliseconds, waited out by every worker, nothing lost or doubled.
    for user in ("alice", "bob"):
        fill(source_dovecot, user, 60)
    emulator = emulator_factory(
        ews_config({a: Mailbox() for a in TARGETS.values()}, max_concurrency=1, concurrency_back_off_ms=50)
    )
    emulator.inject("server_busy", "CreateItem", count=3, back_off_ms=200)
    lab = make_ews_lab(
        tmp_path / "lab",
        source_dovecot,
        emulator,
        mailboxes=(("alice", "pilot"), ("bob", "pilot")),
        target_extra="batch_items = 5",
        tail="[run]\nworkers = 2\n",
    )

    code, summary = lab.run()

    assert code == 0, summary
    for user in ("alice", "bob"):
        assert_one_item_each(lab, user, 60)
    assert emulator.requests["CreateItem"] >= 24 + 3  # every batch, and the busy answers


def test_busy_answers_hold_every_worker_of_the_account_and_show_in_the_pace(
    emulator_factory: EmulatorFactory,
) -> None:
    from ews_lab import EWS_PASSWORD, SERVICE_ACCOUNT

    from runners.connectors.ews_target import open_session
    from runners.model import AppendItem
    from runners.pacing import forget_paces, pace_snapshots
    from runners.plan.ews_options import EwsOptions
    from runners.plan.model import Endpoint, MailboxEntry, Secret

    forget_paces()
    emulator = emulator_factory()
    emulator.inject("server_busy", "CreateItem", count=2, back_off_ms=300)
    options = EwsOptions("basic", SERVICE_ACCOUNT, None, False, True, 64 << 20, 100, 27)
    endpoint = Endpoint(
        type="ews",
        host=emulator.host,
        port=emulator.port,
        password=Secret(EWS_PASSWORD),
        ca_file=emulator.ca_file,
        ews=options,
    )
    session = open_session(endpoint, MailboxEntry("alice", TARGETS["alice"], "w"))
    session.create_folder("Busy")

    outcomes = session.append(
        "Busy", [AppendItem(message(f"busy {n}"), (), None, f"key{n}") for n in range(3)]
    )

    assert all(o.item_id and o.error is None for o in outcomes)
    (pace,) = [p for p in pace_snapshots() if p.scope == f"ews:{SERVICE_ACCOUNT}@{emulator.host}"]
    assert pace.back_offs == 2 and pace.concurrency == 27
    assert len(emulator.items(TARGETS["alice"], "Busy")) == 3

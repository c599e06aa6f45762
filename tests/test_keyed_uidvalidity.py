"""A source folder's UIDVALIDITY changes between runs, into Exchange (EWS) and Microsoft 365 (Graph):
the targets re-render messages, so the superseded ledger rows (source SHA-256 → target item) say
which copies are already there. Real Dovecot source, the EWS and Graph emulators as targets."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from corpus import dates, message
from dovecot_lab import run_killed
from ews_lab import TARGETS, EmulatorFactory, EwsLab, emulator_factory, make_ews_lab
from graph_lab import GraphLab, address, make_graph_lab, tenant
from servers import imapfill
from servers.dovecot import DovecotServer

from lab.graph import GraphEmulator

__all__ = ["emulator_factory"]

BODIES = [message(f"work {i}", f"body {i}") for i in range(4)] + [message("twin", "same bytes")] * 2
WHEN = dates(len(BODIES) + 2)


def refill(source: DovecotServer, bodies: list[bytes]) -> None:
    """Recreate "Work" on the source (a new UIDVALIDITY: every UID the ledger knows is void)."""
    with imapfill.connect(source, "alice", master=True) as client:
        if client.folder_exists("Work"):
            client.delete_folder("Work")
        client.create_folder("Work")
    for body, date in zip(bodies, WHEN, strict=False):
        imapfill.append(source, "alice", "Work", body, ("\\Seen",), date, master=True)


def uidvalidity_events(plan: Path) -> list[str]:
    db = sqlite3.connect(plan.parent / ".cutover" / "state.db")
    try:
        return [m for (m,) in db.execute("SELECT message FROM events WHERE kind = 'uidvalidity' ORDER BY id")]
    finally:
        db.close()


def copied_and_matched(run: Callable[[], tuple[int, dict[str, object]]]) -> tuple[object, object]:
    """One pass, which must succeed: (messages copied, messages matched to what the target holds)."""
    code, summary = run()
    totals = summary["totals"]
    assert code == 0 and isinstance(totals, dict), summary
    return totals["copied"], totals["matched_by_content"]


def check_changes(
    source: DovecotServer,
    run: Callable[[], tuple[int, dict[str, object]]],
    verify: Callable[[], tuple[int, dict[str, object]]],
    subjects: Callable[[], Counter[str]],
    delete: Callable[[str], None],
    plan: Path,
) -> None:
    refill(source, BODIES)
    assert run()[0] == 0
    assert subjects() == Counter({"work 0": 1, "work 1": 1, "work 2": 1, "work 3": 1, "twin": 2})
    delete("work 1")  # its user deleted it on the target: it must come back, not be matched
    # Same messages and dates, a third twin and a new one, under a new UIDVALIDITY.
    now = [*BODIES, message("twin", "same bytes"), message("brand new")]
    refill(source, now)

    assert copied_and_matched(run) == (3, 5)
    expected = Counter({"work 0": 1, "work 1": 1, "work 2": 1, "work 3": 1, "twin": 3, "brand new": 1})
    assert subjects() == expected
    assert "matching by the ledger: 5 earlier copies still on the target" in uidvalidity_events(plan)[-1]
    code, answer = verify()
    assert code == 0, json.dumps(answer)[:2000]

    # Once more: the five matched items carry the first UIDVALIDITY's keys, and are found all the same.
    refill(source, now)
    assert copied_and_matched(run) == (0, 8)
    assert subjects() == expected
    code, answer = verify()
    assert code == 0, json.dumps(answer)[:2000]
    # A rerun after the pass completed: the superseded rows are gone, nothing is matched or copied.
    assert copied_and_matched(run) == (0, 0)
    assert subjects() == expected


def test_ews_a_new_uidvalidity_matches_earlier_copies_by_the_ledger(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator_factory())
    mailbox = TARGETS["alice"]

    def delete(subject: str) -> None:
        (item,) = [i for i in lab.items("alice", "Work") if i.subject == subject]
        lab.emulator.delete_item(mailbox, item.item_id)

    check_changes(
        source_dovecot,
        lab.run,
        lab.verify,
        lambda: Counter(i.subject for i in lab.items("alice", "Work")),
        delete,
        lab.plan,
    )


def test_graph_a_new_uidvalidity_matches_earlier_copies_by_the_ledger(
    tmp_path: Path, source_dovecot: DovecotServer
) -> None:
    with GraphEmulator(tenant("alice")) as emulator:
        lab = make_graph_lab(tmp_path / "lab", source_dovecot, emulator)
        mailbox = address("alice")

        def delete(subject: str) -> None:
            (item,) = [i for i in emulator.items(mailbox, "Work") if i.subject == subject]
            emulator.delete_item(mailbox, item.id)

        check_changes(
            source_dovecot,
            lab.run,
            lab.verify,
            lambda: Counter(i.subject for i in emulator.items(mailbox, "Work")),
            delete,
            lab.plan,
        )
        assert not emulator.internal_errors and not emulator.unknown_requests


KILL_TAIL = "[run]\nbatch_messages = 2\nconnections_per_mailbox = 1\n"


def check_killed_pass(
    lab: EwsLab | GraphLab, subjects: Callable[[], Counter[str]], delete: Callable[[str], None]
) -> None:
    refill(lab.source, BODIES)
    assert lab.run()[0] == 0
    delete("work 1")
    refill(lab.source, [*BODIES, message("twin", "same bytes"), message("brand new")])
    # The first batch matches "work 0" and creates "work 1" again; the run dies before recording it.
    run_killed(lab, "after-append:1")

    code, summary = lab.run()

    assert code == 0, summary
    # The superseded rows outlived the killed pass: the rest is matched by them, "work 1" found by its key.
    assert (summary["totals"]["copied"], summary["totals"]["matched_by_content"]) == (2, 5)
    expected = Counter({"work 0": 1, "work 1": 1, "work 2": 1, "work 3": 1, "twin": 3, "brand new": 1})
    assert subjects() == expected
    code, answer = lab.verify()
    assert code == 0, json.dumps(answer)[:2000]


def test_ews_killed_during_the_matching_pass_then_rerun_duplicates_nothing(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator_factory(), tail=KILL_TAIL)

    def delete(subject: str) -> None:
        (item,) = [i for i in lab.items("alice", "Work") if i.subject == subject]
        lab.emulator.delete_item(TARGETS["alice"], item.item_id)

    check_killed_pass(lab, lambda: Counter(i.subject for i in lab.items("alice", "Work")), delete)


def test_graph_killed_during_the_matching_pass_then_rerun_duplicates_nothing(
    tmp_path: Path, source_dovecot: DovecotServer
) -> None:
    with GraphEmulator(tenant("alice")) as emulator:
        lab = make_graph_lab(tmp_path / "lab", source_dovecot, emulator, tail=KILL_TAIL)
        mailbox = address("alice")

        def delete(subject: str) -> None:
            (item,) = [i for i in emulator.items(mailbox, "Work") if i.subject == subject]
            emulator.delete_item(mailbox, item.id)

        check_killed_pass(lab, lambda: Counter(i.subject for i in emulator.items(mailbox, "Work")), delete)
        assert not emulator.internal_errors and not emulator.unknown_requests

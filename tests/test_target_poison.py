"""A "poison" message on the target: one that Exchange or Microsoft 365 fails every time (a 500
ErrorInternalServerError for its MIME, a connection the server drops at it). The batch it was in is
narrowed down to it; it is recorded as failed in the server's words and everything else goes in,
this folder's rest and the folders after it; a rerun duplicates nothing, ``kill -9`` in the middle
neither; throttling is still waited out, never held against a message.

End to end: real Dovecot as the source, the EWS and Graph emulators as the target, ``cutover run``
and ``cutover verify`` as an operator runs them."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from corpus import message
from dovecot_lab import run_killed
from ews_lab import TARGETS, EmulatorFactory, EwsLab, emulator_factory, make_ews_lab
from exchangelib.errors import ErrorServerBusy
from graph_lab import GraphLab, address, keys_held, make_graph_lab, tenant
from servers import imapfill
from servers.dovecot import DovecotServer

from lab.ews import Item
from lab.graph import GraphEmulator, Limits
from runners.connectors.ews_errors import protocol_error
from runners.connectors.exchange_props import KEY_PROPERTY_NAME, KEY_PROPERTY_SET
from runners.engine.resilience import AppendFailed, Suspects, blames_message
from runners.errors import CommandError, ConnectError, ConnectionLost, MailboxFatal
from runners.imap.codes import command_error
from runners.model import MessageMeta

__all__ = ["emulator_factory"]

MARKER = "X-Lab-Poison: this MIME fails on the target"
#: Messages per folder; the poison one is Archive's third (Archive is copied first, the others after).
FOLDERS = {"Archive": 7, "INBOX": 4, "Sent": 3}
POISON = ("Archive", 2)
TOTAL = sum(FOLDERS.values())
GRAPH_500 = "500 ErrorInternalServerError: An internal server error occurred. The operation failed."


def fill(source: DovecotServer, user: str = "alice") -> None:
    for folder, count in FOLDERS.items():
        if folder != "INBOX":
            imapfill.create_folder(source, user, folder, master=True)
        for n in range(count):
            extra = MARKER if (folder, n) == POISON else ""
            imapfill.append(
                source, user, folder, message(f"{folder} {n}", f"body {folder} {n}", extra=extra), master=True
            )


def ledger(root: Path) -> list[tuple[int, str, str | None]]:
    """(source UID, status, reason) of every ledger row."""
    with sqlite3.connect(root / ".cutover" / "state.db") as db:
        return list(db.execute("SELECT src_uid, status, reason FROM messages ORDER BY folder_id, src_uid"))


def failed_rows(root: Path) -> list[tuple[int, str, str | None]]:
    return [row for row in ledger(root) if row[1] != "copied"]


def expected_subjects() -> list[str]:
    return sorted(f"{f} {n}" for f, count in FOLDERS.items() for n in range(count) if (f, n) != POISON)


def verify_agrees(report: dict[str, Any], words: str) -> None:
    """``cutover verify``: every other message on the target, none extra, the poison one failed."""
    assert report["totals"]["ok"] == TOTAL - 1 and report["totals"]["failed"] == 1, report["totals"]
    assert report["totals"]["lost"] == 0 and report["totals"]["different"] == 0
    (box,) = report["mailboxes"]
    assert all(f["extra_on_target"] == 0 for f in box["folders"]), box["folders"]
    (difference,) = box["differences"]
    assert (difference["bucket"], difference["folder"], difference["uid"]) == ("failed", "Archive", 3)
    assert words in difference["reason"], difference


# -- Microsoft 365 (Graph, importMime) ---------------------------------------------------------------


@pytest.fixture
def graph(tmp_path: Path, source_dovecot: DovecotServer) -> GraphLab:
    fill(source_dovecot)
    emulator = GraphEmulator(tenant("alice")).start()
    emulator.poison(MARKER.encode())
    yield make_graph_lab(tmp_path / "lab", source_dovecot, emulator, target_extra='route = "import-mime"')
    unknown = emulator.unknown_requests
    emulator.stop()
    assert not unknown


def graph_subjects(emulator: GraphEmulator) -> list[str]:
    return sorted(i.subject for i in emulator.items(address("alice")))


def test_graph_a_poison_message_fails_alone_in_the_servers_words_and_the_mailbox_goes_on(
    graph: GraphLab,
) -> None:
    code, summary = graph.run()

    assert code == 1  # partial
    (box,) = summary["mailboxes"]
    assert box["state"] == "partial", box
    assert graph_subjects(graph.emulator) == expected_subjects()
    assert set(keys_held(graph.emulator, "alice").values()) == {1}
    ((uid, status, reason),) = failed_rows(graph.root)
    assert (uid, status) == (3, "failed")
    assert reason is not None and GRAPH_500 in reason, reason
    totals = summary["totals"]
    # What the service made before the batch's failure came back is found by its key, not made again.
    assert totals["copied"] + totals["matched_by_content"] == TOTAL - 1 and totals["failed"] == 1, totals
    assert graph.emulator.internal_errors == []

    # A rerun tries the poison message again (the service may take it now), copies nothing else.
    code, again = graph.run()
    assert again["totals"]["copied"] == 0 and again["totals"]["failed"] == 1, again
    assert graph_subjects(graph.emulator) == expected_subjects()
    assert set(keys_held(graph.emulator, "alice").values()) == {1}
    assert [r[1] for r in failed_rows(graph.root)] == ["failed"]

    assert code == 1  # partial: one message failed
    verify_agrees(graph.verify()[1], GRAPH_500)
    assert "pending" not in [r[1] for r in ledger(graph.root)]


def test_graph_throttling_is_waited_out_beside_a_poison_message(
    tmp_path: Path, source_dovecot: DovecotServer
) -> None:
    # The service allows far fewer requests than the plan's pace: its 429s with Retry-After are
    # waited out and never held against a message; only the poison one fails.
    fill(source_dovecot)
    limits = Limits(requests=12, request_window=2.0)
    with GraphEmulator(tenant("alice", limits=limits)) as emulator:
        emulator.poison(MARKER.encode())
        lab = make_graph_lab(tmp_path / "lab", source_dovecot, emulator, target_extra='route = "import-mime"')

        _, summary = lab.run()

        assert emulator.throttled, "the budget was never reached: the test proves nothing"
        assert all(t.retry_after is not None for t in emulator.throttled)
        (box,) = summary["mailboxes"]
        assert box["state"] == "partial", box
        assert graph_subjects(emulator) == expected_subjects()
        ((uid, _, reason),) = failed_rows(lab.root)
        assert uid == 3 and reason is not None and GRAPH_500 in reason and "429" not in reason


# -- Exchange Server (EWS) ---------------------------------------------------------------------------


@pytest.fixture
def ews(tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory) -> EwsLab:
    fill(source_dovecot)
    emulator = emulator_factory()
    emulator.poison(MARKER.encode())
    return make_ews_lab(
        tmp_path / "lab",
        source_dovecot,
        emulator,
        target_extra="batch_items = 5",
        tail="[run]\nconnections_per_mailbox = 1\n",
    )


def ews_items(lab: EwsLab) -> list[Item]:
    box = lab.emulator.mailbox(TARGETS["alice"])
    return [item for folder in list(box.folders.values()) for item in list(folder.items.values())]


def ews_keys(lab: EwsLab) -> Counter[str]:
    return Counter(str(i.named(KEY_PROPERTY_SET, KEY_PROPERTY_NAME)) for i in ews_items(lab))


def ews_subjects(lab: EwsLab) -> list[str]:
    return sorted(i.subject for i in ews_items(lab))


def test_ews_a_message_the_server_hangs_up_on_fails_alone_and_the_rest_goes_in(ews: EwsLab) -> None:
    _, summary = ews.run()

    (box,) = summary["mailboxes"]
    assert box["state"] == "partial", box
    assert ews_subjects(ews) == expected_subjects()
    assert set(ews_keys(ews).values()) == {1}
    ((uid, status, reason),) = failed_rows(ews.root)
    assert (uid, status) == (3, "failed")
    assert reason is not None and "CreateItem Archive" in reason, reason
    assert "Remote end closed connection without response" in reason

    _, again = ews.run()
    assert again["totals"]["copied"] == 0 and again["totals"]["failed"] == 1, again
    assert ews_subjects(ews) == expected_subjects()
    assert set(ews_keys(ews).values()) == {1}
    assert "pending" not in [r[1] for r in ledger(ews.root)]
    verify_agrees(ews.verify()[1], "Remote end closed connection without response")


@pytest.mark.parametrize("kill_at", ["after-append:2", "before-append:3", "after-record:3"])
def test_ews_killed_while_narrowing_down_then_rerun_duplicates_nothing(ews: EwsLab, kill_at: str) -> None:
    run_killed(ews, kill_at)

    _, summary = ews.run()

    (box,) = summary["mailboxes"]
    assert box["state"] == "partial", box
    assert ews_subjects(ews) == expected_subjects()
    assert set(ews_keys(ews).values()) == {1}
    assert [(r[0], r[1]) for r in failed_rows(ews.root)] == [(3, "failed")]


def test_ews_a_server_busy_for_good_is_throttling_never_a_poison_message(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    # ErrorServerBusy with its BackOffMilliseconds (EWS's Retry-After) on every CreateItem: waited
    # out, then the mailbox is left for a later run as before; no message is blamed for it, even
    # once its batch was narrowed down to one message.
    fill(source_dovecot)
    emulator = emulator_factory()
    emulator.inject("server_busy", "CreateItem", count=10_000, back_off_ms=5)
    emulator.poison(MARKER.encode())
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator, target_extra="batch_items = 5")

    _, summary = lab.run()

    (box,) = summary["mailboxes"]
    assert box["state"] == "failed" and "ErrorServerBusy" in box["error"], box
    assert [r for r in ledger(lab.root) if r[1] == "failed"] == []
    emulator.clear_injections()  # the busy answers end (and the poison with them: made again)
    emulator.poison(MARKER.encode())
    _, again = lab.run()
    assert again["mailboxes"][0]["state"] == "partial"  # the poison message only
    assert ews_subjects(lab) == expected_subjects() and set(ews_keys(lab).values()) == {1}


# -- the narrowing itself ----------------------------------------------------------------------------


def _failed_append(*uids: int, words: str = "500 ErrorInternalServerError: boom") -> AppendFailed:
    metas = [MessageMeta(str(uid), uid, 100) for uid in uids]
    return AppendFailed(
        CommandError("graph://x", "importMime INBOX", words, "500", "500", retryable=True), 1, 7, metas
    )


def test_a_message_failing_alone_while_others_go_in_is_struck_out_after_three_strikes() -> None:
    suspects = Suspects()
    assert not suspects.narrow_append(_failed_append(1, 2, 3), taken=0)
    assert suspects.alone == {1, 2, 3}
    # 1 and 2 went in alone; 3 fails alone, three times the same way (its timestamps aside).
    assert suspects.narrow_append(_failed_append(3), taken=2)
    assert suspects.narrow_append(_failed_append(3), taken=2)
    assert suspects.failed == set()
    assert suspects.narrow_append(_failed_append(3), taken=2)
    assert suspects.failed == {3} and 3 not in suspects.alone and suspects.tried == {3}


def test_a_target_failing_everything_blames_no_message() -> None:
    # An outage: the batch fails, then each of its messages alone, and nothing ever goes in.
    suspects = Suspects()
    assert not suspects.narrow_append(_failed_append(1, 2, 3), taken=5)
    for _ in range(10):
        for uid in (1, 2, 3):
            assert not suspects.narrow_append(_failed_append(uid), taken=5)
    assert suspects.failed == set() and suspects.strikes == {}


def test_throttling_and_final_refusals_are_never_blamed_on_a_message() -> None:
    assert blames_message(CommandError("s", "op", "500 boom", "500", "500", retryable=True))
    assert blames_message(ConnectionLost("s", "op", "reset"))
    assert not blames_message(CommandError("s", "op", "429 TooManyRequests", "429", "429", retryable=True))
    assert not blames_message(CommandError("s", "op", "503 ServiceUnavailable", "503", "503", retryable=True))
    busy = protocol_error(ErrorServerBusy("busy"), "s", "CreateItem", "svc")
    assert busy.retryable and not blames_message(busy)
    assert not blames_message(MailboxFatal("s", "op", "quota", "OVERQUOTA"))
    assert not blames_message(ConnectError("s", "op", "refused"))


def test_an_imap_server_saying_not_now_is_never_blamed_on_the_message() -> None:
    for code in ("INUSE", "UNAVAILABLE"):
        error = command_error("imap://t", "APPEND INBOX", "try later", code)
        assert error.retryable and not blames_message(error)
    assert not blames_message(command_error("imap://t", "APPEND INBOX", "too big", "LIMIT"))  # final

"""Crash recovery on a keyed target (runners/connectors/keyed_recovery.py), against the Graph
emulator: an item a dead client's last request created after the next holder began looking for it
is found by its key, not called lost and created again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from corpus import message
from graph_lab import address, open_target, tenant

from lab.graph import GraphEmulator
from runners.connectors import quiet
from runners.connectors.base import Uncertain
from runners.model import AppendItem


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(tenant("alice")) as running:
        yield running


def uncertain(keys: list[str]) -> list[Uncertain]:
    return [Uncertain(1, str(n), None, None, key) for n, key in enumerate(keys)]


def test_an_item_created_after_the_recovery_began_is_found_by_its_key(emulator: GraphEmulator) -> None:
    keys = ["late/1", "late/2"]
    saver, target = open_target(emulator), open_target(emulator)
    try:
        saver.append("Inbox", [AppendItem(message("already there"), (), None, "early/0")])
        looked_up = emulator.request_counts(address("alice")).get("list", 0) + len(keys)
        created = threading.Event()

        def the_dead_clients_last_request() -> None:
            # Carried out once the recovery's first look (a list by key each) has found nothing.
            deadline = time.monotonic() + 60
            while emulator.request_counts(address("alice")).get("list", 0) < looked_up:
                assert time.monotonic() < deadline, "the recovery never looked"
                time.sleep(0.01)
            saver.append("Inbox", [AppendItem(message(f"late {k}"), (), None, k) for k in keys])
            created.set()

        late = threading.Thread(target=the_dead_clients_last_request)
        late.start()
        found = target.recovery.find("Inbox", uncertain(keys), claimed=set(), after_crash=True)
        late.join()
        assert created.is_set()
        held = {i.immutable_id for i in emulator.items(address("alice"))}
        assert None not in found and len(set(found)) == 2 and set(found) <= held, found
    finally:
        saver.close()
        target.close()


def test_an_item_never_created_is_lost_once_the_folder_is_still(emulator: GraphEmulator) -> None:
    target = open_target(emulator)
    try:
        target.append("Inbox", [AppendItem(message("already there"), (), None, "early/0")])
        started = time.monotonic()
        assert target.recovery.find("Inbox", uncertain(["never/1"]), claimed=set(), after_crash=True) == [
            None
        ]
        assert quiet.QUIET_SECONDS <= time.monotonic() - started < quiet.SETTLE_SECONDS
        # The caller's own intents (a connection of its own lost mid-pass): no wait.
        started = time.monotonic()
        assert target.recovery.find("Inbox", uncertain(["never/1"]), claimed=set()) == [None]
        assert time.monotonic() - started < quiet.QUIET_SECONDS
    finally:
        target.close()


def test_a_count_the_service_could_not_give_is_never_taken_for_stillness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quiet, "QUIET_SECONDS", 0.01)
    answers = iter([None, None, 7, 8, 8, 9])
    read: list[int | None] = []

    def count() -> int | None:  # a Graph or EWS count: None when the service answered with an error
        read.append(next(answers))
        return read[-1]

    quiet.wait_until_still(count)
    assert read == [None, None, 7, 8, 8]  # still only once the same figure came twice in a row

"""The JSON route's creates through Graph's $batch, against the Graph emulator: every sub-response
is checked on its own, a throttled one is sent again alone, and a lost answer duplicates nothing
(the items are found by key)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from corpus import message
from graph_lab import address, keys_held, open_target, tenant

from lab.graph import GraphEmulator, Limits
from runners.connectors.exchange_props import props_for
from runners.connectors.graph_batch import COUNTED_SLACK
from runners.connectors.graph_message import json_message
from runners.model import AppendItem

MESSAGES = 12


def items(count: int = MESSAGES) -> list[AppendItem]:
    return [
        AppendItem(
            message(f"batch {n}"), ("\\Seen",) if n % 2 else (), "01-Feb-2024 10:00:00 +0000", f"k/{n}"
        )
        for n in range(count)
    ]


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(tenant("alice")) as running:
        yield running


def test_twenty_messages_go_in_one_http_request_each_counted_against_the_budget(
    emulator: GraphEmulator,
) -> None:
    target = open_target(emulator)
    target.folders.require("Inbox")  # the folder look-ups first: they are not creates
    before = target.http.stats.requests
    outcomes = target.append("Inbox", items(20))
    target.close()

    assert all(o.item_id and not o.error for o in outcomes)
    assert target.http.stats.requests - before == 1  # one $batch
    counts = emulator.request_counts(address("alice"))
    assert counts["create:json"] == 20
    assert set(keys_held(emulator, "alice").values()) == {1} and len(emulator.items(address("alice"))) == 20
    assert {o.item_id for o in outcomes} == {i.immutable_id for i in emulator.items(address("alice"))}


def test_a_429_inside_the_200_is_sent_again_alone_and_nothing_is_duplicated() -> None:
    # The emulator's window lets 5 requests through per second: the rest of the batch answers 429
    # inside its 200, with Retry-After.
    with GraphEmulator(tenant("alice", limits=Limits(requests=5, request_window=1.0))) as emulator:
        target = open_target(emulator)
        outcomes = target.append("Inbox", items())
        target.close()

        assert all(o.item_id and not o.error for o in outcomes), outcomes
        counts = emulator.request_counts(address("alice"))
        assert counts["status:429"] >= 1 and emulator.throttled
        assert counts["create:json"] == MESSAGES  # each made once: the 429s were not made
        assert set(keys_held(emulator, "alice").values()) == {1}
        assert len(emulator.items(address("alice"))) == MESSAGES
        assert not emulator.unknown_requests and not emulator.internal_errors


def test_a_lost_batch_answer_leaves_no_duplicate(emulator: GraphEmulator) -> None:
    emulator.drop_after_create(count=1, mailbox=address("alice"))
    target = open_target(emulator)
    outcomes = target.append("Inbox", items())
    target.close()

    assert len(emulator.dropped_creates) == 1  # the batch's answer was lost
    assert all(o.item_id and not o.error for o in outcomes), outcomes
    assert (
        emulator.request_counts(address("alice"))["create:json"] == MESSAGES
    )  # found by key, not made again
    assert set(keys_held(emulator, "alice").values()) == {1}
    assert {o.item_id for o in outcomes} == {i.immutable_id for i in emulator.items(address("alice"))}


def test_a_503_for_one_sub_request_is_looked_up_then_made_once(emulator: GraphEmulator) -> None:
    emulator.fail_with_503(count=1, mailbox=address("alice"))
    target = open_target(emulator)
    outcomes = target.append("Inbox", items())
    target.close()

    assert all(o.item_id and not o.error for o in outcomes), outcomes
    assert emulator.request_counts(address("alice"))["create:json"] == MESSAGES
    assert set(keys_held(emulator, "alice").values()) == {1}
    assert len(emulator.items(address("alice"))) == MESSAGES


def test_a_batch_the_byte_window_takes_only_in_part_goes_in_parts_and_is_never_throttled() -> None:
    # The mailbox's upload window holds 5 of the 12 messages (as the service counts them: each
    # request of the batch by its body); the client paces by the same limits. Sent whole, the
    # batch would get 429s inside its 200; cut to what the window takes, it gets none.
    bodies = [json_message(i.body, props_for(i)).size + COUNTED_SLACK for i in items()]
    window = sum(bodies[:5]) + 1
    limits = Limits(upload_bytes=window, upload_window=1.0)
    with GraphEmulator(tenant("alice", limits=limits)) as emulator:
        target = open_target(emulator, upload_bytes=window, upload_window=1.0)
        target.folders.require("Inbox")
        before = target.http.stats.requests
        outcomes = target.append("Inbox", items())
        target.close()

        assert all(o.item_id and not o.error for o in outcomes), outcomes
        assert not emulator.throttled
        assert target.http.stats.requests - before == 3  # 5 now, 5 a window later, then 2
        assert emulator.request_counts(address("alice"))["create:json"] == MESSAGES
        assert set(keys_held(emulator, "alice").values()) == {1}

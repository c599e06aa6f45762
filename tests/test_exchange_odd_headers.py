"""Headers real mailboxes hold that Python's datetime and email packages stumble on, into Microsoft
365 (the Graph emulator) by ``cutover run``: the message is copied with what can be kept, the
mailbox goes on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from corpus import message
from graph_lab import address, make_graph_lab, tenant
from servers import imapfill
from servers.dovecot import DovecotServer

from lab.graph import GraphEmulator

ARRIVED = datetime(2021, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(tenant("alice")) as running:
        yield running


def test_a_date_header_with_no_utc_instant_leaves_sent_unset_and_the_mailbox_goes_on(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    # 31 Dec 9999 at UTC-12 is 1 Jan 10000 in UTC, past datetime's range: it raised OverflowError,
    # which failed the whole mailbox, on every rerun.
    odd = (
        b"From: a@example.test\r\nSubject: end of time\r\n"
        b"Date: Fri, 31 Dec 9999 23:59:59 -1200\r\n\r\nbody\r\n"
    )
    imapfill.append(source_dovecot, "alice", "INBOX", odd, ("\\Seen",), ARRIVED)
    imapfill.append(source_dovecot, "alice", "INBOX", message("after it"), (), ARRIVED)
    lab = make_graph_lab(tmp_path / "lab", source_dovecot, emulator, target_extra='route = "json"')

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == 2
    items = {i.subject: i for i in emulator.items(address("alice"))}
    assert set(items) == {"end of time", "after it"}
    kept = items["end of time"]
    assert (kept.is_read, kept.received, kept.sent) == (True, ARRIVED, None)  # the date is no date
    assert lab.run()[1]["totals"]["copied"] == 0
    verify_code, report = lab.verify()
    assert verify_code == 0, report

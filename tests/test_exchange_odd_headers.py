"""Headers real mailboxes hold that Python's datetime and email packages stumble on, into Microsoft
365 (the Graph emulator) by ``cutover run``: the message is copied with what can be kept, the
mailbox goes on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from corpus import message
from ews_lab import EmulatorFactory, emulator_factory, make_ews_lab
from graph_lab import address, make_graph_lab, tenant
from servers import imapfill
from servers.dovecot import DovecotServer

from lab.graph import GraphEmulator

__all__ = ["emulator_factory"]  # a fixture, used by name

ARRIVED = datetime(2021, 6, 1, 12, 0, 0, tzinfo=UTC)
#: 31 Dec 9999 at UTC-12 is 1 Jan 10000 in UTC, past datetime's range.
END_OF_TIME = (
    b"From: a@example.test\r\nSubject: end of time\r\nDate: Fri, 31 Dec 9999 23:59:59 -1200\r\n\r\nbody\r\n"
)


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(tenant("alice")) as running:
        yield running


def test_a_date_header_with_no_utc_instant_leaves_sent_unset_and_the_mailbox_goes_on(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    # 31 Dec 9999 at UTC-12 is 1 Jan 10000 in UTC, past datetime's range: it raised OverflowError,
    # which failed the whole mailbox, on every rerun.
    imapfill.append(source_dovecot, "alice", "INBOX", END_OF_TIME, ("\\Seen",), ARRIVED)
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


def test_the_same_date_through_mime_into_both_services_is_copied_and_the_mailbox_goes_on(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator, emulator_factory: EmulatorFactory
) -> None:
    """The MIME routes hand the header to the service, which reads it itself: Exchange answers (it
    has no sent time for it); the emulators dropped the connection or answered 500 instead."""
    imapfill.append(source_dovecot, "alice", "INBOX", END_OF_TIME, ("\\Seen",), ARRIVED)
    imapfill.append(source_dovecot, "alice", "INBOX", message("after it"), (), ARRIVED)
    graph = make_graph_lab(tmp_path / "graph", source_dovecot, emulator)  # importMime, the default
    ews = make_ews_lab(tmp_path / "ews", source_dovecot, emulator_factory())
    for lab, held in (
        (graph, lambda: emulator.items(address("alice"))),
        (ews, lambda: ews.items("alice")),
    ):
        code, summary = lab.run()
        assert code == 0, summary
        assert summary["totals"]["copied"] == 2
        items = {i.subject: i for i in held()}
        assert set(items) == {"end of time", "after it"}
        assert (items["end of time"].received, items["end of time"].sent) == (ARRIVED, None)
        assert lab.run()[1]["totals"]["copied"] == 0
        verify_code, report = lab.verify()
        assert verify_code == 0, report


def test_the_json_route_reads_raw_8bit_headers_as_text_not_replacement_characters(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    # Old clients wrote Latin-1 (or UTF-8) straight into headers; compat32 turned every such byte
    # into U+FFFD, so "café" arrived as "caf\ufffd" for good. One broken encoded word kept its
    # well-formed neighbours encoded too.
    latin1 = (
        b"From: J\xf6rg M\xfcller <j@example.test>\r\nTo: Ren\xe9e <r@example.test>\r\n"
        b"Subject: caf\xe9 cr\xe8me br\xfbl\xe9e\r\nDate: Tue, 02 Jan 2024 10:00:00 +0100\r\n\r\nbody\r\n"
    )
    utf8 = "Subject: Grüße aus Köln\r\nFrom: x@example.test\r\n\r\nbody\r\n".encode()
    words = b"Subject: =?utf-8?B?!!!?= =?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\nFrom: x@example.test\r\n\r\nbody\r\n"
    for body in (latin1, utf8, words):
        imapfill.append(source_dovecot, "alice", "INBOX", body, (), ARRIVED)
    lab = make_graph_lab(tmp_path / "lab", source_dovecot, emulator, target_extra='route = "json"')

    code, summary = lab.run()

    assert code == 0, summary
    subjects = {i.subject for i in emulator.items(address("alice"))}
    assert subjects == {"café crème brûlée", "Grüße aus Köln", "=?utf-8?B?!!!?= Grüße"}
    (jorg,) = [i for i in emulator.items(address("alice")) if i.subject.startswith("café")]
    headers = dict(jorg.headers)  # PR_TRANSPORT_MESSAGE_HEADERS, as set
    assert (headers["From"], headers["To"]) == ("Jörg Müller <j@example.test>", "Renée <r@example.test>")
    stored = emulator.tenant.mailboxes[address("alice")].messages[jorg.immutable_id]  # its fields
    assert stored.from_ is not None and stored.from_["name"] == "Jörg Müller"
    assert [r["name"] for r in stored.to] == ["Renée"]
    verify_code, report = lab.verify()
    assert verify_code == 0, report

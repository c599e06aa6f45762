"""What an Exchange-family target keeps: a faithful re-rendering compares equal, a changed field
does not, and the IMAP flags map to Exchange's state in one place."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from corpus import awkward_messages

from runners.connectors.exchange_props import (
    FLAG_STATUS_FLAGGED,
    MSGFLAG_READ,
    MSGFLAG_UNSENT,
    VERB_FORWARD,
    VERB_REPLY,
    props_for,
)
from runners.kept import ImapState, content_of, differences, expected_item
from runners.model import AppendItem

ATTACHMENT = bytes(range(256)) * 40


def original() -> bytes:
    return (
        b"From: Alice Example <Alice@Example.test>\r\n"
        b"To: bob@example.test, Carol <carol@example.test>\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n  K\xc3\xb6ln\r\n"
        b"Date: Tue, 02 Jan 2024 10:00:00 +0100\r\n"
        b"Message-ID: <m1@example.test>\r\n"
        b"X-Legacy-Spam-Score: 3.1\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=FC=DFe   \r\naus K=F6ln\r\n\r\n\r\n"
        b"--outer\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
        + b"--outer--\r\n"
    )


def rerendered(attachment: bytes = ATTACHMENT, date: bytes = b"Tue, 2 Jan 2024 09:00:00 +0000") -> bytes:
    """The same message as Exchange gives it back: other boundaries, encodings, charset, header
    order and spelling, LF line endings, the headers it doesn't keep gone."""
    return (
        b"Message-ID: <m1@example.test>\n"
        b"Subject: =?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\n"
        b'From: "Alice Example" <alice@example.test>\n'
        b"To: Carol <carol@example.test>,\n bob@example.test\n"
        b"Date: " + date + b"\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="_002_exchange_"\n\n'
        b"--_002_exchange_\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes("Grüße\naus Köln\n".encode())
        + b'--_002_exchange_\nContent-Type: application/pdf; name="a.pdf"\n'
        b'Content-Disposition: attachment; filename="a.pdf"; size=10240\n'
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(attachment) + b"--_002_exchange_--\n"
    )


def test_a_faithful_rerendering_compares_equal() -> None:
    assert content_of(original()) == content_of(rerendered())
    want = expected_item(original(), ("\\Seen",), "02-Jan-2024 10:00:05 +0100", "k1", deep=True)
    got = expected_item(rerendered(), ("\\Seen",), "02-Jan-2024 09:00:05 +0000", "k1", deep=True)
    assert differences(want, got) == []


def test_a_changed_attachment_or_date_is_named() -> None:
    want = expected_item(original(), (), "02-Jan-2024 10:00:05 +0100", "k1", deep=True)
    tampered = ATTACHMENT[:-1] + b"\x00"
    got = expected_item(rerendered(tampered, b"Tue, 2 Jan 2024 09:30:00 +0000"), (), None, "k1", deep=True)
    fields = [line.split(":")[0] for line in differences(want, got)]
    assert "attachments" in fields
    assert "sent" in fields and "header date" in fields


def test_state_and_dates_are_judged_without_deep() -> None:
    want = expected_item(
        original(), ("\\Seen", "\\Flagged", "Work"), "02-Jan-2024 10:00:05 +0100", "k", deep=False
    )
    got = expected_item(original(), ("\\Flagged", "work"), "03-Jan-2024 10:00:05 +0100", "k", deep=False)
    found = differences(want, got)
    assert [f.split(":")[0] for f in found] == ["received", "read"]
    assert "2024-01-02 09:00:05 UTC" in found[0]


def test_every_awkward_message_is_read_without_raising() -> None:
    for body in awkward_messages():
        item = expected_item(body, ("\\Seen",), None, "k", deep=True)
        assert item.bodies is not None and item.attachments is not None
        assert differences(item, item) == []


def test_imap_flags_map_to_exchange_state_in_one_place() -> None:
    state = ImapState.from_flags(
        ("\\Seen", "\\Answered", "$Forwarded", "$MDNSent", "Work", "WORK", "$label1")
    )
    assert (state.read, state.answered, state.forwarded, state.draft) == (True, True, True, False)
    assert state.categories == ("$label1", "Work")
    body = original()
    unread = props_for(AppendItem(body, (), "02-Jan-2024 10:00:05 +0100", key="k"))
    assert unread.message_flags == 0 and unread.flag_status is None and unread.last_verb is None
    assert unread.received == datetime(2024, 1, 2, 9, 0, 5, tzinfo=UTC)
    assert unread.sent == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)
    read = props_for(AppendItem(body, ("\\Seen", "\\Flagged", "\\Answered"), None, key="k"))
    assert read.message_flags == MSGFLAG_READ and read.flag_status == FLAG_STATUS_FLAGGED
    assert read.last_verb == VERB_REPLY and read.received == read.sent  # no INTERNALDATE: the Date header
    draft = props_for(AppendItem(body, ("\\Draft", "$Forwarded"), None, key="k"))
    assert draft.message_flags & MSGFLAG_UNSENT and draft.last_verb == VERB_FORWARD

"""Delivery status notices for spooled mail: their fields, and one notice per failed message even
across a crash between queuing the notice and moving the message to ``failed/``."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from runners.plan.proxy_smtp_options import ProxySmtpSettings
from runners.proxy.dsn import MAX_HEADER_BYTES, FailedRecipient, compose, original_header, status_of
from runners.proxy.spool import Outcome, Recipient, Spool
from runners.proxy.spool_delivery import SpoolDelivery

BODY = b"From: carol@example.test\r\nSubject: hello\r\n..Dotted: kept\r\n\r\n..a dotted body line\r\n"


@pytest.mark.parametrize(
    ("words", "status"),
    [
        ("550 5.1.1 no such user here", "5.1.1"),
        ("552 5.3.4 message too big", "5.3.4"),
        ("554 Transaction failed", "5.0.0"),  # no enhanced code: the class of the reply code
        ("550 5.7.1x odd", "5.0.0"),  # not an enhanced code
        ("no reply at all", "5.0.0"),
    ],
)
def test_the_status_comes_from_the_backends_words(words: str, status: str) -> None:
    assert status_of(words) == status


def test_the_original_header_is_unstuffed_and_cut_at_a_line_end() -> None:
    assert original_header(BODY) == b"From: carol@example.test\r\nSubject: hello\r\n.Dotted: kept\r\n"
    long = b"".join(b"X-Filler-%05d: %s\r\n" % (n, b"y" * 60) for n in range(2000)) + b"\r\nbody\r\n"
    cut = original_header(long)
    assert len(cut) <= MAX_HEADER_BYTES and cut.endswith(b"\r\n") and cut.startswith(b"X-Filler-00000")


def _spooled(spool: Spool, recipients: list[Recipient], sender: str = "carol@example.test") -> str:
    draft = spool.begin(sender, "", recipients)
    draft.write(BODY)
    draft.commit()
    return draft.envelope.id


def _notice(spool: Spool, spool_id: str) -> EmailMessage:
    stuffed = (spool.queue / f"{spool_id}-dsn.msg").read_bytes().split(b"\n", 1)[1]
    raw = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in stuffed.split(b"\r\n"))
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_crash_after_the_notice_was_queued_sends_it_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool_id = _spooled(spool, [Recipient("ghost@example.test", "target")])
    spool.record(spool_id, Outcome("target", (), ((0, "550 5.1.1 no such user here"),)))
    settings = ProxySmtpSettings(store_and_forward=True, spool_dir=spool.directory, bounce_via="legacy")
    delivery = SpoolDelivery(spool, {}, settings)
    asyncio.run(delivery.deliver(spool_id))
    queued = sorted(p.name for p in spool.queue.iterdir())
    assert queued == [f"{spool_id}-dsn.msg"]
    why = json.loads((spool.failed / f"{spool_id}.why").read_text())
    assert why["notice"] == f"{spool_id}-dsn" and why["refused"] == [
        ["ghost@example.test", "550 5.1.1 no such user here"]
    ]

    # The crash: the message is back in the queue with its records, the notice already queued.
    (spool.failed / f"{spool_id}.msg").rename(spool.queue / f"{spool_id}.msg")
    spool.record(spool_id, Outcome("target", (), ((0, "550 5.1.1 no such user here"),)))
    asyncio.run(delivery.deliver(spool_id))
    assert sorted(p.name for p in spool.queue.iterdir()) == [f"{spool_id}-dsn.msg"]  # not a second notice
    envelope_line = json.loads((spool.queue / f"{spool_id}-dsn.msg").read_bytes().split(b"\n", 1)[0])
    assert envelope_line["sender"] == "" and envelope_line["recipients"] == [["carol@example.test", "legacy"]]
    spool.close()


def test_giving_up_tells_the_sender_which_recipients_expired(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool_id = _spooled(
        spool, [Recipient("dave@example.test", "target"), Recipient("erin@example.test", "gone")]
    )
    spool.record(spool_id, Outcome("target", (0,), ()))  # dave was delivered earlier
    settings = ProxySmtpSettings(
        store_and_forward=True, spool_dir=spool.directory, bounce_via="legacy", give_up_hours=1e-9
    )
    asyncio.run(SpoolDelivery(spool, {}, settings).deliver(spool_id))
    notice = _notice(spool, spool_id)
    _, status, header = notice.iter_parts()
    blocks = [dict(block.items()) for block in status.get_payload()]
    assert blocks[1:] == [{"Final-Recipient": "rfc822; erin@example.test", "Action": "failed", "Status": "4.4.7",
                           "Diagnostic-Code": "smtp; gave up after 0.0 h: no smtp endpoint for backend gone"}]  # fmt: skip
    assert ".Dotted: kept" in header.get_content()
    assert (spool.failed / f"{spool_id}.msg").exists()
    spool.close()


def test_no_notice_without_a_backend_for_notices_or_for_the_null_sender(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    from_nobody = _spooled(spool, [Recipient("ghost@example.test", "target")], sender="")
    unnamed = _spooled(spool, [Recipient("ghost@example.test", "target")])
    for spool_id in (from_nobody, unnamed):
        spool.record(spool_id, Outcome("target", (), ((0, "550 5.1.1 no such user here"),)))
    with_notices = ProxySmtpSettings(store_and_forward=True, spool_dir=spool.directory, bounce_via="legacy")
    asyncio.run(SpoolDelivery(spool, {}, with_notices).deliver(from_nobody))
    asyncio.run(SpoolDelivery(spool, {}, ProxySmtpSettings(store_and_forward=True)).deliver(unnamed))
    assert list(spool.queue.iterdir()) == []
    assert sorted(p.name for p in spool.failed.glob("*.msg")) == sorted(
        [f"{from_nobody}.msg", f"{unnamed}.msg"]
    )
    spool.close()


def test_an_8bit_header_and_8bit_words_make_a_7bit_notice_that_keeps_them() -> None:
    raw = "From: jörg@example.test\r\nSubject: Grüße\r\n".encode()
    notice_bytes = compose(
        reporting_host="mx.example.test", sender='odd"quote@example.test', spool_id="1-a", arrival=0.0,
        failed=[FailedRecipient("ghost@example.test", "550 5.1.1 nö\tsuch user", "5.1.1")],
        header=original_header(raw + b"\r\nbody\r\n"), now=0.0,
    )  # fmt: skip
    assert notice_bytes.isascii()  # no 8BITMIME needed from the backend that takes it
    notice = email.message_from_bytes(notice_bytes, policy=email.policy.default)
    _, status, header = notice.iter_parts()
    assert "Subject: Grüße" in header.get_content() and "From: jörg@example.test" in header.get_content()
    blocks = [dict(block.items()) for block in status.get_payload()]
    assert blocks[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 n\\xf6 such user"  # plain ASCII, no encoded-word
    assert "=?" not in status.as_string()
    assert notice["To"] == "undisclosed-recipients:;"  # the envelope, not the header, carries this one

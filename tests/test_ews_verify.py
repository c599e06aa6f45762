"""``cutover verify`` against Exchange: one item per ledger key, counts, dates, read, flag and
categories as intended; with ``--deep`` the attachments (SHA-256), body texts and kept headers of what
Exchange renders. A tampered attachment and a changed date are found; bytes are never claimed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from corpus import message
from ews_lab import EmulatorFactory, EwsLab, emulator_factory, make_ews_lab
from servers import imapfill
from servers.dovecot import DovecotServer

__all__ = ["emulator_factory"]

ARRIVED = datetime(2021, 7, 8, 9, 10, 11, tzinfo=timezone(timedelta(hours=-4)))
ATTACHED = (
    b"From: Alice Example <alice@example.test>\r\nTo: bob@example.test, Carol <carol@example.test>\r\n"
    b"Cc: dave@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= with a file\r\n"
    b"Date: Wed, 07 Jul 2021 18:00:00 +0200\r\nMessage-ID: <file.1@example.test>\r\n"
    b"In-Reply-To: <earlier@example.test>\r\nReferences: <first@example.test> <earlier@example.test>\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
    b"--B\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Here is the file.\r\nSee you.\r\n"
    b'--B\r\nContent-Type: application/pdf; name="report.pdf"\r\nContent-Disposition: attachment; filename="report.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK\r\n--B--\r\n"
)


@pytest.fixture
def lab(tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory) -> EwsLab:
    imapfill.append(source_dovecot, "alice", "INBOX", ATTACHED, ("\\Seen", "Project"), ARRIVED, master=True)
    for n, flags in enumerate([(), ("\\Flagged",), ("\\Answered", "\\Seen")]):
        imapfill.append(
            source_dovecot, "alice", "INBOX", message(f"note {n}", f"text {n}"), flags, ARRIVED, master=True
        )
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator_factory())
    code, summary = lab.run()
    assert code == 0, summary
    return lab


def differences(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for m in report["mailboxes"] for d in m["differences"]]


def test_a_faithful_copy_verifies_by_kept_fields_and_deep(lab: EwsLab) -> None:
    code, report = lab.verify()
    assert code == 0 and report["ok"], differences(report)
    assert report["compared_by"] == "kept-fields"
    assert report["totals"]["ok"] == 4

    code, deep = lab.verify("pilot", "--deep")
    assert code == 0 and deep["ok"], differences(deep)
    assert deep["compared_by"] == "kept-fields"  # never "sha256": Exchange re-renders MIME


def test_a_tampered_attachment_is_found_by_deep_verify(lab: EwsLab) -> None:
    (item,) = [i for i in lab.items() if i.attachments]
    lab.emulator.tamper(item.item_id, attachment=(0, b"%PDF-1.4 something else"))

    assert lab.verify()[0] == 0  # the kept fields are intact: only --deep reads the content
    code, report = lab.verify("pilot", "--deep")

    assert code != 0
    (difference,) = differences(report)
    assert difference["bucket"] == "different" and "attachments" in difference["reason"]


def test_a_changed_received_date_is_found(lab: EwsLab) -> None:
    (item,) = [i for i in lab.items() if i.subject == "note 1"]
    lab.emulator.tamper(item.item_id, received=datetime(2022, 1, 1, tzinfo=UTC))

    code, report = lab.verify()

    assert code != 0
    (difference,) = differences(report)
    assert "received" in difference["reason"] and "2021-07-08" in difference["reason"]

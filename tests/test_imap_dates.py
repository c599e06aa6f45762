"""One IMAP date-time form (runners/imap/dates.py) from every source, and a ledger written in the
other padding RFC 3501 allows reruns as a no-op."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from corpus import awkward_messages, dates
from dovecot_lab import make_lab, rewrite_table
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.connectors.maildir_source import imap_utc_date
from runners.connectors.pop3_source import imap_date
from runners.imap.dates import canonical_date, format_date_time


def test_every_source_writes_the_same_form() -> None:
    moment = datetime(2023, 8, 1, 8, 5, 9, tzinfo=UTC)
    expected = "01-Aug-2023 08:05:09 +0000"  # two-digit day, as Dovecot sends it
    assert format_date_time(moment) == expected
    assert imap_utc_date(moment.timestamp()) == expected  # Maildir: a file time
    assert imap_date(b"Tue, 1 Aug 2023 08:05:09 +0000") == expected  # POP3: a header date
    assert imap_date(b"Tue, 1 Aug 2023 08:05:09 -0000") == expected  # RFC 5322's "zone unknown"
    assert canonical_date(" 1-Aug-2023 08:05:09 +0000") == expected  # IMAP: a variant, rewritten
    assert canonical_date("1-Aug-2023 08:05:09 GMT") == expected
    assert canonical_date(expected) is expected  # the canonical form is passed through, not rebuilt


def test_zones_keep_their_minutes_and_absurd_ones_are_no_date() -> None:
    assert imap_date(b"Sat, 9 Dec 2023 23:59:59 -0330") == "09-Dec-2023 23:59:59 -0330"
    assert canonical_date("2023-12-09T23:59:59-03:30") == "09-Dec-2023 23:59:59 -0330"
    assert imap_date(b"Sat, 9 Dec 2023 23:59:59 +0545") == "09-Dec-2023 23:59:59 +0545"
    # A zone of a day or more: the old POP3 formatter passed "+2500" on; no date is the honest answer
    # (the ledger then says the copy has none), as for every other unreadable date.
    assert imap_date(b"Sat, 9 Dec 2023 23:59:59 +2500") is None
    assert imap_date(b"Sat, 9 Dec 0999 23:59:59 +0000") is None  # APPEND's date-year is 4DIGIT


@pytest.mark.parametrize("source_type", ["imap", "maildir", "pop3"])
def test_a_ledger_with_the_other_day_padding_reruns_as_a_no_op(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, source_type: str
) -> None:
    # Single-digit days: the padding is what differs between a store of old and the code of now.
    for n, (body, date) in enumerate(zip(awkward_messages(), dates(12), strict=False)):
        flags = [("\\Seen",), (), ("\\Flagged", "$Forwarded")][n % 3]
        imapfill.append(source_dovecot, "alice", "INBOX", body, flags, date.replace(day=1 + n % 9))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    if source_type == "maildir":
        root = str(source_dovecot.maildir("alice")).replace("/alice/", "/{user}/")
        rewrite_table(lab.plan, "source", lambda _: f'[source]\ntype = "maildir"\npath = "{root}"\n\n')
    elif source_type == "pop3":
        lab.plan.write_text(
            lab.plan.read_text()
            .replace('type = "imap"', 'type = "pop3"', 1)
            .replace(f"port = {source_dovecot.imap_port}", f"port = {source_dovecot.pop3_port}")
        )
    code, summary = lab.run()
    assert code == 0 and summary["totals"]["copied"] == 12, summary
    copied = imapfill.folder_snapshot(target_dovecot, "alice", master=True)

    db = sqlite3.connect(lab.root / ".cutover" / "state.db")
    with db:
        rewritten = db.execute(
            "UPDATE messages SET internaldate = ' ' || substr(internaldate, 2) WHERE internaldate LIKE '0%'"
        ).rowcount
    db.close()
    assert rewritten > 0  # POP3 takes its dates from the headers, the others from the arrival dates

    code, summary = lab.run()

    assert code == 0, summary
    totals = summary["totals"]
    assert (totals["copied"], totals["flags_synced"], totals["matched_by_content"]) == (0, 0, 0)
    assert imapfill.folder_snapshot(target_dovecot, "alice", master=True) == copied  # bodies, flags, dates

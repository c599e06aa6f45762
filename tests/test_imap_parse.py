"""The IMAP response parser on the shapes real servers send."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.imap.codes import auth_error, command_error
from runners.imap.dates import canonical_date
from runners.imap.parse import compress_uids, expand_uid_set, fetch_meta, literal_at_end, split_code, tokens


@pytest.mark.parametrize(
    ("spec", "uids"),
    [("5", [5]), ("5:7,9", [5, 6, 7, 9]), ("9:7", [7, 8, 9]), ("1,3:4,10", [1, 3, 4, 10])],
)
def test_uid_sets_expand(spec: str, uids: list[int]) -> None:
    assert expand_uid_set(spec) == uids


def test_uid_sets_compress_round_trip() -> None:
    uids = [1, 2, 3, 7, 9, 10, 11, 40]
    assert compress_uids(reversed(uids)) == b"1:3,7,9:11,40"
    assert expand_uid_set(compress_uids(uids).decode()) == uids


def test_response_codes_keep_the_whole_text() -> None:
    code, args, text = split_code(b"[APPENDUID 38505 3955:3957] APPEND completed")
    assert (code, args) == ("APPENDUID", "38505 3955:3957")
    assert text == "[APPENDUID 38505 3955:3957] APPEND completed"
    assert split_code(b"Mailbox is over quota") == (None, "", "Mailbox is over quota")


def test_fetch_metadata_items_in_any_order() -> None:
    line = b'* 12 FETCH (FLAGS (\\Seen $UID Junk \\Recent) INTERNALDATE " 7-Feb-2024 10:00:00 +0100" RFC822.SIZE 4242 UID 99 MODSEQ (17))\r\n'
    uid, size, flags, date, modseq = fetch_meta(line)
    assert (uid, size, date, modseq) == (99, 4242, " 7-Feb-2024 10:00:00 +0100", 17)
    # \Recent is session state, never copied; a keyword named like an item doesn't confuse UID.
    assert flags == ("\\Seen", "$UID", "Junk")


@pytest.mark.parametrize(
    "items",
    [
        b'UID 99 RFC822.SIZE 4242 FLAGS (\\Seen $UID Junk \\Recent) INTERNALDATE "07-Feb-2024 10:00:00 +0100" MODSEQ (17)',
        b'RFC822.SIZE 4242 UID 99 FLAGS (\\Seen $UID Junk \\RECENT) MODSEQ (17) INTERNALDATE "07-Feb-2024 10:00:00 +0100"',
        b'UID 99 RFC822.SIZE 4242 FLAGS (\\Seen $UID Junk \\recent) INTERNALDATE "07-Feb-2024 10:00:00 +0100" MODSEQ (17)',
    ],
)
def test_fetch_metadata_in_the_usual_order_reads_as_in_any_other(items: bytes) -> None:
    # The usual order is matched in one go (the listing's hot path), any other item by item.
    assert fetch_meta(b"* 12 FETCH (" + items + b")\r\n") == (
        99,
        4242,
        ("\\Seen", "$UID", "Junk"),
        "07-Feb-2024 10:00:00 +0100",
        17,
    )
    plain = b'* 3 FETCH (UID 5 RFC822.SIZE 10 FLAGS () INTERNALDATE "01-Aug-2023 10:00:00 +0530")\r\n'
    assert fetch_meta(plain) == (5, 10, (), "01-Aug-2023 10:00:00 +0530", None)


def test_tokens_handle_quoting_literals_and_nil() -> None:
    parts = [b'* LIST (\\HasNoChildren \\Sent) "/" ', b'Sent "Items"', b"\r\n"]
    assert tokens(parts) == ["*", "LIST", ["\\HasNoChildren", "\\Sent"], b"/", b'Sent "Items"']
    assert tokens([b'* LIST (\\Noselect) NIL "a \\"b\\""\r\n']) == [
        "*",
        "LIST",
        ["\\Noselect"],
        None,
        b'a "b"',
    ]
    assert tokens([b"* STATUS INBOX (MESSAGES 3 UIDNEXT 9)\r\n"]) == [
        "*",
        "STATUS",
        "INBOX",
        ["MESSAGES", 3, "UIDNEXT", 9],
    ]


@pytest.mark.parametrize(
    ("code", "operation", "temporary"),
    [
        ("INUSE", "SELECT INBOX", True),
        ("UNAVAILABLE", "LOGIN alice", True),
        ("LIMIT", "AUTHENTICATE PLAIN alice", True),  # too many sessions: later
        ("LIMIT", "APPEND INBOX", False),  # this message is too large: never
        ("OVERQUOTA", "APPEND INBOX", False),
        ("AUTHENTICATIONFAILED", "LOGIN alice", False),
        (None, "SELECT Locked", False),
    ],
)
def test_response_codes_are_classified_retry_later_or_final(
    code: str | None, operation: str, temporary: bool
) -> None:
    assert command_error("imap://h:1", operation, "text", code).retryable is temporary
    assert auth_error("imap://h:1", operation, "text", code).retryable is temporary


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("07-Feb-2024 10:00:00 +0100", "07-Feb-2024 10:00:00 +0100"),  # canonical: untouched
        ("17-Jul-1996 02:44:25 -0700", "17-Jul-1996 02:44:25 -0700"),
        (" 7-Feb-2024 10:00:00 +0100", "07-Feb-2024 10:00:00 +0100"),  # RFC 3501's other padding
        ("7-Feb-2024 10:00:00 +0100", "07-Feb-2024 10:00:00 +0100"),  # no padding
        ("07-feb-2024 10:00:00 GMT", "07-Feb-2024 10:00:00 +0000"),  # textual zone, lower-case month
        ("Tue, 2 Jan 2024 10:00:00 +0530", "02-Jan-2024 10:00:00 +0530"),  # RFC 5322 style
        ("2024-01-02T10:00:00-08:00", "02-Jan-2024 10:00:00 -0800"),  # ISO 8601
        ("2024-01-02T10:00:00-03:30", "02-Jan-2024 10:00:00 -0330"),  # a zone with minutes, west
        ("not a date", None),
        (None, None),
    ],
)
def test_internaldates_are_sent_in_the_form_append_takes(given: str | None, sent: str | None) -> None:
    assert canonical_date(given) == sent


def test_flag_lists_are_cached_only_when_short() -> None:
    """A folder's few usual lists are parsed once; a hostile server's long ones are parsed each time,
    never kept (1,024 lists of a megabyte would otherwise stay in memory)."""
    from runners.imap.parse import _CACHED_FLAGS_BYTES, _flags, _short_flags

    _short_flags.cache_clear()
    assert _flags(b"\\Seen \\Recent $Label1") == ("\\Seen", "$Label1")
    assert _flags(b"\\Seen \\Recent $Label1") == ("\\Seen", "$Label1")
    assert _short_flags.cache_info().hits == 1
    long = b" ".join(b"$k%d" % n for n in range(_CACHED_FLAGS_BYTES)) + b" \\RECENT"
    assert _flags(long) == tuple(f"$k{n}" for n in range(_CACHED_FLAGS_BYTES))
    assert _short_flags.cache_info().currsize == 1


_LITERAL_REGEX = re.compile(rb"[~]?\{(\d+)\+?\}\r\n$")  # what literal_at_end replaced on the wire


@pytest.mark.parametrize(
    "line",
    [
        b"* 1 FETCH (UID 7 BODY[] {31234}\r\n",
        b"A1 APPEND INBOX {12+}\r\n",
        b"* 2 FETCH (BINARY[] ~{5}\r\n",
        b"{~{12}\r\n",
        b"x{12}y{34}\r\n",
        b"{1}\r\n",
        b"{}\r\n",
        b"{+}\r\n",
        b"{12++}\r\n",
        b"{1a}\r\n",
        b"}\r\n",
        b"* OK done\r\n",
        b"{12}\n",
        b"{\xd9\xa1}\r\n",  # not an ASCII digit
        b"{" + b"9" * 40 + b"}\r\n",
    ],
)
def test_literal_at_end_finds_what_the_regex_found(line: bytes) -> None:
    m = _LITERAL_REGEX.search(line) if line.endswith(b"}\r\n") else None
    assert literal_at_end(line) == (None if m is None else (m.start(), m.group(1)))


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"{", b"}", b"~", b"+", b"1", b"42", b" ", b"x", b"\r", b"\n", b"\r\n"]), max_size=12
    )
)
def test_literal_at_end_agrees_with_the_regex_on_any_line(pieces: list[bytes]) -> None:
    line = b"".join(pieces) + b"}\r\n"
    m = _LITERAL_REGEX.search(line)
    assert literal_at_end(line) == (None if m is None else (m.start(), m.group(1)))

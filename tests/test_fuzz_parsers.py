"""Fuzzing the IMAP and POP3 response parsers with the hostile kit's vocabulary: nothing escapes them
but the documented protocol errors (``ProtocolError`` and its subclasses). Derandomized: CI repeats
the same examples every time."""

from __future__ import annotations

import socket
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.hostile import ESCAPES, HUGE_LITERALS
from runners.connectors.pop3_source import _pairs, imap_date, internaldate_from_headers
from runners.errors import ProtocolError
from runners.imap.parse import fetch_meta, fetch_uid, split_code, tokens
from runners.imap.wire import ImapConnection

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

WORDS = [
    b"* ", b"A1 ", b"OK ", b"NO ", b"BAD ", b"BYE ", b"+ ", b"FETCH ", b"LIST ", b"STATUS ", b"UID ",
    b"RFC822.SIZE ", b"FLAGS (", b"INTERNALDATE ", b'"01-Jan-2026 00:00:00 +0000"', b"BODY[] ", b"MODSEQ (",
    b"NIL", b"(", b")", b"[", b"]", b'"', b"\\", b"{", b"}", b"~{", b"+}", b"\r\n", b"\r", b"\n", b"\x00",
    b"1", b"7", b"42", b"-1", b"4294967296", b" ", b"CAPABILITY", b"APPENDUID", b"\xff\xfe", b"\xc3",
    *(b"{" + size + b"}\r\n" for size in HUGE_LITERALS), *HUGE_LITERALS, *ESCAPES.values(),
]  # fmt: skip
text = st.lists(st.sampled_from(WORDS), max_size=40).map(b"".join)


@FUZZ
@given(text)
def test_split_code_and_fetch_meta_never_raise(line: bytes) -> None:
    split_code(line)
    fetch_meta(line)


@FUZZ
@given(st.lists(text, min_size=1, max_size=5))
def test_tokens_and_fetch_uid_never_raise(parts: list[bytes]) -> None:
    tokens(parts)
    fetch_uid(parts)


@FUZZ
@given(st.lists(text, max_size=6))
def test_the_wire_raises_only_protocol_errors(responses: list[bytes]) -> None:
    ours, theirs = socket.socketpair()
    sender = threading.Thread(target=_send_and_close, args=(theirs, b"".join(responses)), daemon=True)
    sender.start()
    conn = ImapConnection("fuzz", 0, security="plain", timeout=5)
    conn._attach(ours)
    try:
        for _ in range(1000):
            conn.read_response()
    except ProtocolError:
        pass
    finally:
        conn.close()
        sender.join()


def _send_and_close(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the reader hung up first (a limit): fine
    finally:
        sock.close()


@FUZZ
@given(text, text)
def test_pop3_parsers_never_raise(listing: bytes, headers: bytes) -> None:
    list(_pairs(listing))
    internaldate_from_headers(headers)
    imap_date(headers)

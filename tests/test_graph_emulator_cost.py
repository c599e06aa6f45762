"""The emulator's cheaper paths answer exactly what the plain ones did: headers parsed on first read
(lab/graph/header_block.py) and the body preview from a prefix (resources.body_preview), compared
with the eager computations over awkward mail and generated text."""

from __future__ import annotations

import email.policy
import random
from email.parser import BytesParser

from corpus import awkward_messages, message

from lab.graph.header_block import block_parser, fetched_headers, parse_header_block
from lab.graph.mailbox import Message, utc_now
from lab.graph.mime import parse_import
from lab.graph.resources import body_preview

#: Header blocks where parsing is easy to get wrong: folding, RFC 2047 words, 8-bit text,
#: duplicates, lines that aren't headers, address groups, empty values.
_HEADER_BLOCKS = [
    "Received: from a.example (a.example [192.0.2.1])\r\n\tby b.example; Tue, 2 Jan 2024 10:00:00 +0100\r\n"
    "Received: from c.example\r\n by d.example; Mon, 1 Jan 2024 09:00:00 +0000",
    "Subject: =?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\nFrom: =?iso-8859-1?q?J=F6rg?= <j@example.test>",
    "Subject: =?utf-8?q?unterminated\r\nTo: undisclosed-recipients:;\r\nCc: team: a@x.test, b@y.test;",
    "Subject: Grüße\r\nX-Note: ünïcödé ☃\r\nX-Dup: one\r\nX-Dup: two\r\nx-dup: three",
    "this line is not a header\r\nSubject: after junk\r\n continued without a header before",
    " leading continuation\r\nSubject: s",
    "X-Empty:\r\nX-Space: \r\nX-Colons: a: b: c\r\nX-Tab:\tvalue",
    'Content-Type: multipart/mixed; boundary="B"\r\nContent-Transfer-Encoding: 8bit',
    "Content-Type: text/plain; charset=bogus-42; format=flowed; delsp=yes",
    "Date: not a date\r\nMessage-ID: <no-close@example\r\nIn-Reply-To: <a@b> <c@d>",
    'From: "Quoted, Name" <q@example.test>, bare@example.test, <angle@example.test>',
    "Subject: " + "word " * 400,
    "Bad Header Name: value\r\nSubject:no space",
    "Subject: bare LF\nX-Next: after LF\n\tfolded by tab",
    "",
]


def _corpus() -> list[bytes]:
    blocks = [(block + "\r\n\r\nbody\r\n").encode("utf-8") for block in _HEADER_BLOCKS]
    multipart = message(
        "alternative",
        "--A\nContent-Type: text/plain; charset=utf-8\n\nplain\n--A\nContent-Type: text/html\n\n<p>x</p>\n--A--",
        extra='MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="A"',
    )
    return [*awkward_messages(), multipart, *blocks]


def _eager_items(raw: bytes) -> list[tuple[str, str]]:
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    return [(name, str(value)) for name, value in parsed.items()]


def test_import_headers_read_late_equal_the_eager_parse() -> None:
    for raw in _corpus():
        parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
        assert fetched_headers(list(parsed.raw_items())) == _eager_items(raw), raw[:60]
        assert parse_import(raw).headers() == _eager_items(raw), raw[:60]


def test_transport_block_parsed_on_first_read_only() -> None:
    for block in [
        *_HEADER_BLOCKS,
        *(raw.decode("utf-8", "replace").split("\r\n\r\n")[0] for raw in _corpus()),
    ]:
        now = utc_now()
        item = Message("id", "immutable", "", "json", now, now, now, None, False, True)
        item.header_source = block_parser(block)
        assert item.headers == parse_header_block(block), block[:60]
        assert item.header_source is None
        # A later assignment wins over a block not yet read, as it did over the parsed one.
        item.header_source = block_parser(block)
        item.headers = [("X-Set", "later")]
        assert item.headers == [("X-Set", "later")]


def test_body_preview_equals_the_whole_text_split() -> None:
    pieces = ["word", "x" * 300, " ", "  ", "\r\n", "\t", "\u00a0", "\u2028", "\u3000", "\x1c", "ü", "☃", ""]
    rng = random.Random(7)
    texts = ["", " " * 5000, "a" * 5000, " " * 3000 + "tail", "a " * 2000, "x" * 1019 + " y" * 300]
    for _ in range(400):
        size = rng.choice((3, 30, 300, 1500))
        texts.append("".join(rng.choice(pieces) for _ in range(size)))
    for text in texts:
        assert body_preview(text) == " ".join(text.split())[:255], text[:60]

"""Transport headers kept raw and parsed on first read.

Parsing a header block with email's policy.default costs about a millisecond per message, most of
the emulator's CPU for an import; the headers are read far less often (internetMessageHeaders
when selected, $value, the tests' inspection), so an item keeps a parser closure and the parse
runs once, when someone looks. What a read gives is exactly what the eager parse gave: the same
function does the work, only later.
"""

from __future__ import annotations

import email.policy
import functools
from collections.abc import Callable
from email.parser import BytesParser

HeaderPairs = list[tuple[str, str]]


def parse_header_block(block: str) -> HeaderPairs:
    """The headers of PR_TRANSPORT_MESSAGE_HEADERS (0x007D) as (name, value) pairs."""
    message = BytesParser(policy=email.policy.default).parsebytes(
        block.encode("utf-8", "replace") + b"\r\n\r\n"
    )
    return [(name, str(value)) for name, value in message.items()]


def block_parser(block: str) -> Callable[[], HeaderPairs]:
    """parse_header_block(block), deferred; parsed once however often called."""
    return functools.cache(lambda: parse_header_block(block))


def fetched_headers(raw: HeaderPairs) -> HeaderPairs:
    """What Message.items() answers under policy.default, from its raw_items(): items() applies
    the policy's header_fetch_parse to each stored pair, and so does this."""
    policy = email.policy.default
    return [(name, str(policy.header_fetch_parse(name, value))) for name, value in raw]


def raw_items_parser(raw: HeaderPairs) -> Callable[[], HeaderPairs]:
    """fetched_headers(raw), deferred; parsed once however often called."""
    return functools.cache(lambda: fetched_headers(raw))

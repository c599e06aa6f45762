"""What a Graph item keeps, read back as a ``runners.kept.KeptItem`` for ``cutover verify``.

Times are Graph's receivedDateTime (PR_MESSAGE_DELIVERY_TIME) and sentDateTime (PR_CLIENT_SUBMIT_TIME);
answered/forwarded come from PR_LAST_VERB_EXECUTED; with ``--deep`` headers, body text and
attachment bytes come from the MIME Exchange renders for the item (``GET .../$value``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from runners.connectors.exchange_props import PR_LAST_VERB_EXECUTED, VERB_FORWARD
from runners.connectors.graph_message import KEY_PROPERTY, PR_MESSAGE_SIZE, ROUTE_PROPERTY, integer
from runners.kept import ImapState, KeptItem, content_of, iso_utc_seconds

LAST_VERB = integer(PR_LAST_VERB_EXECUTED)
SIZE = integer(PR_MESSAGE_SIZE)
KEPT_SELECT = "id,receivedDateTime,sentDateTime,isRead,isDraft,flag,categories"
KEPT_EXPAND = (
    f"singleValueExtendedProperties($filter=id eq '{KEY_PROPERTY}' or id eq '{ROUTE_PROPERTY}'"
    f" or id eq '{LAST_VERB}' or id eq '{SIZE}')"
)
#: PR_LAST_VERB_EXECUTED values meaning replied to (reply, reply all).
REPLIED = (102, 103)


_PROPERTY_ID = re.compile(r"\s*(\w+)\s+(?:0x([0-9a-f]+)|\{([0-9a-f-]+)\}\s+(name|id)\s+(.+?))\s*$", re.I)


@lru_cache(maxsize=256)  # a handful of distinct ids, asked for every property of every item read
def property_key(property_id: str) -> tuple[str, ...]:
    """An extended property id by value: Graph answers ``Integer 0xe07`` for ``Integer 0x0E07``."""
    match = _PROPERTY_ID.match(property_id)
    if match is None:
        return (property_id.casefold(),)
    kind, tag, guid, how, name = match.groups()
    if tag is not None:
        return (kind.lower(), str(int(tag, 16)))
    if how.lower() == "id":
        return (
            kind.lower(),
            guid.lower(),
            "id",
            str(int(name, 16)) if name.lower().startswith("0x") else name,
        )
    return (kind.lower(), guid.lower(), "name", name)


def property_value(data: dict[str, Any], property_id: str) -> str | None:
    """The value of one expanded single-value extended property, or None (ids compared by value)."""
    wanted = property_key(property_id)
    for prop in data.get("singleValueExtendedProperties") or ():
        if property_key(str(prop.get("id", ""))) == wanted:
            value = prop.get("value")
            return None if value is None else str(value)
    return None


def header_value(data: dict[str, Any], name: str) -> str | None:
    """The value of one of the item's ``internetMessageHeaders`` (names compare without case)."""
    wanted = name.casefold()
    for header in data.get("internetMessageHeaders") or ():
        if str(header.get("name", "")).casefold() == wanted:
            return str(header.get("value", "")).strip()
    return None


def kept_item(data: dict[str, Any], mime: bytes | None) -> KeptItem:
    verb_text = property_value(data, LAST_VERB)
    verb = int(verb_text) if verb_text and verb_text.lstrip("-").isdigit() else None
    flag = data.get("flag") or {}
    state = ImapState(
        read=bool(data.get("isRead")),
        flagged=flag.get("flagStatus") == "flagged",
        answered=verb in REPLIED,
        forwarded=verb == VERB_FORWARD,
        draft=bool(data.get("isDraft")),
        categories=tuple(sorted(set(data.get("categories") or ()))),
    )
    content = content_of(mime) if mime is not None else None
    size_text = property_value(data, SIZE)
    return KeptItem(
        key=property_value(data, KEY_PROPERTY) or "",
        received=iso_utc_seconds(data.get("receivedDateTime")),
        sent=iso_utc_seconds(data.get("sentDateTime")),
        state=state,
        route=property_value(data, ROUTE_PROPERTY) or "",
        size=int(size_text) if size_text and size_text.isdigit() else 0,
        headers=content.headers if content else None,
        bodies=content.bodies if content else None,
        attachments=content.attachments if content else None,
    )

"""The query options each kind of request takes; anything else is a 400 (and a recorded unknown)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from lab.graph.context import Call
from lab.graph.odata import Expand, Node, ODataError, parse_expand, parse_filter, parse_int, parse_select


@dataclass(slots=True)
class Options:
    select: list[str] | None = None
    expand: list[Expand] = field(default_factory=list)
    filter: Node | None = None
    top: int | None = None
    skip: int = 0
    count: bool = False
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (property, descending)
    extra: dict[str, str] = field(default_factory=dict)


def options(
    call: Call,
    allowed: Iterable[str],
    properties: tuple[str, ...] = (),
    expands: tuple[str, ...] = (),
    type_name: str = "",
    max_top: int = 1000,
    extra: Iterable[str] = (),
) -> Options:
    """Parse the query of call, taking only the options in allowed (plus extra plain parameters)."""
    allowed_set = set(allowed)
    extra_set = {e.lower() for e in extra}
    parsed = Options()
    for name, value in call.query.items():
        key = name if name.startswith("$") else name.lower()
        if not key.startswith("$") and key in extra_set:
            parsed.extra[key] = value
            continue
        if key not in allowed_set:
            raise ODataError(
                f"Query option '{name}' is not allowed. Make sure the query option is supported by the request."
            )
        if key == "$select":
            parsed.select = parse_select(value, properties, type_name)
        elif key == "$expand":
            parsed.expand = parse_expand(value, expands)
        elif key == "$filter":
            parsed.filter = parse_filter(value)
        elif key == "$top":
            parsed.top = parse_int("$top", value, max_top)
        elif key == "$skip":
            parsed.skip = parse_int("$skip", value)
        elif key == "$count":
            if value.lower() not in ("true", "false"):
                raise ODataError(f"Invalid value {value!r} for $count.")
            parsed.count = value.lower() == "true"
        elif key == "$orderby":
            for part in value.split(","):
                words = part.split()
                if (
                    not words
                    or len(words) > 2
                    or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
                ):
                    raise ODataError(f"Invalid $orderby {value!r}.")
                parsed.orderby.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return parsed


def next_link(call: Call, skip: int, top: int) -> str:
    """The @odata.nextLink: the same request with $skip moved on (how Graph pages mail resources)."""
    query = {k: v for k, v in call.query.items() if k not in ("$skip", "$top")}
    query["$top"] = str(top)
    query["$skip"] = str(skip)
    encoded = urlencode(query, safe="$,()':/", quote_via=quote)
    return f"{call.base_url}/{call.version}{call.path}?{encoded}"

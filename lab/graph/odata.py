"""The OData query options the emulator understands: $filter, $select, $expand, $top, $skip, $count.

Only the subset Graph's mail resources take
(https://learn.microsoft.com/en-us/graph/query-parameters, .../filter-query-parameter): comparisons
(eq ne gt ge lt le) of a property with a literal, and/or/not, parentheses, and the lambda
``collection/any(v: ...)`` that finds an item by a single-value extended property
(https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-get). Anything else
raises ODataError, which the server answers as a 400 and records as an unknown request.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.graph.mailbox import property_key


class ODataError(ValueError):
    """A query option the emulator (and, as far as the docs say, Graph) does not take."""


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})
  | (?P<datetime>\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d))
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<punct>[()/:,])
  | (?P<word>[A-Za-z_@$][A-Za-z0-9_.@$]*)
)""",
    re.VERBOSE,
)

COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
Node = tuple[Any, ...]


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ODataError(f"Invalid filter clause: unexpected text at {text[position : position + 20]!r}")
        position = match.end()
        kind = match.lastgroup
        raw = match.group(kind or "")
        if kind == "string":
            tokens.append(("literal", raw[1:-1].replace("''", "'")))
        elif kind == "guid":
            tokens.append(("literal", raw.lower()))
        elif kind == "datetime":
            tokens.append(("literal", dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))))
        elif kind == "number":
            tokens.append(("literal", float(raw) if "." in raw else int(raw)))
        elif kind == "punct":
            tokens.append(("punct", raw))
        elif raw in ("true", "false"):
            tokens.append(("literal", raw == "true"))
        elif raw == "null":
            tokens.append(("literal", None))
        else:
            tokens.append(("word", raw))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise ODataError("Invalid filter clause: unexpected end")
        self.position += 1
        return token

    def expect(self, kind: str, value: Any = None) -> Any:
        token = self.take()
        if token[0] != kind or (value is not None and str(token[1]).lower() != value):
            raise ODataError(f"Invalid filter clause: expected {value or kind}, found {token[1]!r}")
        return token[1]

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and str(token[1]).lower() in words

    def parse(self) -> Node:
        node = self.expression()
        extra = self.peek()
        if extra is not None:
            raise ODataError(f"Invalid filter clause: unexpected {extra[1]!r}")
        return node

    def expression(self) -> Node:
        node = self.conjunction()
        while self.at_word("or"):
            self.take()
            node = ("or", node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.unary()
        while self.at_word("and"):
            self.take()
            node = ("and", node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at_word("not"):
            self.take()
            return ("not", self.unary())
        token = self.peek()
        if token == ("punct", "("):
            self.take()
            node = self.expression()
            self.expect("punct", ")")
            return node
        left = self.operand()
        if left[0] == "any" or (left[0] == "call" and left[1] in _BOOLEAN_FUNCTIONS):
            return left
        token = self.take()
        if token[0] != "word" or str(token[1]).lower() not in COMPARISONS:
            raise ODataError(f"Invalid filter clause: expected a comparison, found {token[1]!r}")
        return ("cmp", str(token[1]).lower(), left, self.operand())

    def operand(self) -> Node:
        token = self.take()
        if token[0] == "literal":
            return ("lit", token[1])
        if token == ("punct", "("):
            inner = self.operand()
            self.expect("punct", ")")
            return inner
        if token[0] != "word":
            raise ODataError(f"Invalid filter clause: unexpected {token[1]!r}")
        if self.peek() == ("punct", "("):
            return self.function(str(token[1]).lower())
        path = [str(token[1])]
        while self.peek() == ("punct", "/"):
            self.take()
            name = str(self.expect("word"))
            if name.lower() == "any":
                self.expect("punct", "(")
                variable = str(self.expect("word"))
                self.expect("punct", ":")
                body = self.expression()
                self.expect("punct", ")")
                return ("any", tuple(path), variable, body)
            path.append(name)
        return ("path", tuple(path))

    def function(self, name: str) -> Node:
        """contains(a, b), startswith(a, b), endswith(a, b), cast(a, Edm.Type) (filter-query-parameter page)."""
        if name not in _BOOLEAN_FUNCTIONS and name != "cast":
            raise ODataError(f"Invalid filter clause: unknown function {name!r}")
        self.expect("punct", "(")
        first = self.operand()
        self.expect("punct", ",")
        if name == "cast":
            type_name = str(self.expect("word"))
            if type_name not in _CASTS:
                raise ODataError(f"Invalid filter clause: can't cast to {type_name}")
            self.expect("punct", ")")
            return ("call", name, first, ("lit", type_name))
        second = self.operand()
        self.expect("punct", ")")
        return ("call", name, first, second)


_BOOLEAN_FUNCTIONS = frozenset({"contains", "startswith", "endswith"})
_CASTS = {
    "Edm.Int32": int,
    "Edm.Int64": int,
    "Edm.Double": float,
    "Edm.Guid": str,
    "Edm.String": str,
    "Edm.Boolean": str,
}


def parse_filter(text: str) -> Node:
    return _Parser(text).parse()


#: Resolves a path of property names on the item a filter is applied to.
Getter = Callable[[Sequence[str]], Any]


def evaluate(node: Node, get: Getter, bound: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """Whether the item (read through get) matches; lambda variables are bound to dicts."""
    bound = bound or {}
    kind = node[0]
    if kind == "and":
        return evaluate(node[1], get, bound) and evaluate(node[2], get, bound)
    if kind == "or":
        return evaluate(node[1], get, bound) or evaluate(node[2], get, bound)
    if kind == "not":
        return not evaluate(node[1], get, bound)
    if kind == "any":
        _, path, variable, body = node
        collection = get(path)
        if not isinstance(collection, list):
            raise ODataError(f"Invalid filter clause: {'/'.join(path)} is not a collection")
        return any(evaluate(body, get, {**bound, variable: element}) for element in collection)
    if kind == "call":
        return bool(_value(node, get, bound))
    if kind == "cmp":
        _, op, left, right = node
        return _compare(op, _value(left, get, bound), _value(right, get, bound), _is_property_id(left, right))
    raise ODataError("Invalid filter clause")


def _is_property_id(left: Node, right: Node) -> bool:
    """An id (of an item or an extended property) is compared by identity, never lower-cased."""
    return any(side[0] == "path" and side[1][-1].lower() == "id" for side in (left, right))


def _call(node: Node, get: Getter, bound: Mapping[str, Mapping[str, Any]]) -> Any:
    _, name, first, second = node
    value = _value(first, get, bound)
    if name == "cast":
        try:
            return _CASTS[second[1]](value) if value is not None else None
        except ValueError:
            return None
    other = _value(second, get, bound)
    if not isinstance(value, str) or not isinstance(other, str):
        return False
    value, other = value.lower(), other.lower()  # string functions are case-insensitive in Exchange
    return {
        "contains": other in value,
        "startswith": value.startswith(other),
        "endswith": value.endswith(other),
    }[name]


def _value(node: Node, get: Getter, bound: Mapping[str, Mapping[str, Any]]) -> Any:
    if node[0] == "lit":
        return node[1]
    if node[0] == "call":
        return _call(node, get, bound)
    path: tuple[str, ...] = node[1]
    if path[0] in bound:
        element = bound[path[0]]
        field = next((k for k in element if len(path) == 2 and k.lower() == path[1].lower()), None)
        if field is None:
            raise ODataError(f"Invalid filter clause: {'/'.join(path)} is not a property")
        return element[field]
    return get(path)


def _compare(op: str, left: Any, right: Any, property_ids: bool) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        # A property id's type, tag and GUID compare case-insensitively, its Name case-sensitively;
        # values compare case-insensitively (singlevaluelegacyextendedproperty-get).
        if property_ids:
            left, right = property_key(left), property_key(right)
        else:
            left, right = left.lower(), right.lower()
    if isinstance(left, str) and isinstance(right, dt.datetime):
        left = dt.datetime.fromisoformat(left.replace("Z", "+00:00"))
    if isinstance(right, str) and isinstance(left, dt.datetime):
        right = dt.datetime.fromisoformat(right.replace("Z", "+00:00"))
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        return bool({"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op])
    except TypeError as exc:
        raise ODataError(f"Invalid filter clause: can't compare {left!r} and {right!r}") from exc


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split at separators outside parentheses and quotes ($select, $expand lists)."""
    parts: list[str] = []
    depth, quoted = 0, False
    current: list[str] = []
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


@dataclass(frozen=True, slots=True)
class Expand:
    name: str
    filter: Node | None = None


def parse_expand(text: str, allowed: Sequence[str]) -> list[Expand]:
    """``$expand=singleValueExtendedProperties($filter=id eq '...'),attachments``."""
    expands: list[Expand] = []
    for part in split_top_level(text):
        match = re.fullmatch(r"([A-Za-z]+)(?:\((.*)\))?", part, re.DOTALL)
        if match is None:
            raise ODataError(f"Parsing OData Select and Expand failed: {part!r}")
        name = _canonical(match.group(1), allowed, "navigation property")
        node = None
        if match.group(2):
            inner = match.group(2).strip()
            option = re.fullmatch(r"\$filter=(.*)", inner, re.DOTALL)
            if option is None:
                raise ODataError(
                    f"Parsing OData Select and Expand failed: only $filter is taken inside {name}()"
                )
            node = parse_filter(option.group(1))
        expands.append(Expand(name, node))
    return expands


def parse_select(text: str, allowed: Sequence[str], type_name: str) -> list[str]:
    names = [part for part in split_top_level(text) if part]
    return [_canonical(name, allowed, f"property on type '{type_name}'") for name in names]


def _canonical(name: str, allowed: Sequence[str], what: str) -> str:
    for candidate in allowed:
        if candidate.lower() == name.lower():
            return candidate
    raise ODataError(f"Could not find a {what} named '{name}'.")


def parse_int(name: str, text: str, maximum: int | None = None) -> int:
    if not text.isdigit():
        raise ODataError(f"Invalid value {text!r} for query option {name}.")
    value = int(text)
    if maximum is not None and value > maximum:
        raise ODataError(f"The limit of '{maximum}' for {name} is exceeded.")
    return value

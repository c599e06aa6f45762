"""Typed reads from one parsed TOML table, raising ``PlanError`` with file, line and dotted key.

Values of secret keys are never put in a message: the plan may hold literal passwords.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from runners.errors import PlanError
from runners.plan.locate import Key, KeyLocator

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key(key: Key) -> str:
    """``("mailboxes", "entries", 2, "source")`` → ``mailboxes.entries[2].source``."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out += f".{text}" if out else text
    return out


def type_name(value: object) -> str:
    """The TOML name of a parsed value's type, as a user would write it in the plan."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return type(value).__name__


def did_you_mean(word: str, options: Collection[str]) -> str:
    """`` (did you mean "x"?)`` for the closest option, or "" when nothing is close."""
    import difflib  # a plan error's hint only: not loaded by every command's start

    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


@dataclass(frozen=True, slots=True)
class Document:
    """The plan file being loaded: how to name it and where its keys are."""

    path: str
    locator: KeyLocator

    def error(self, key: Key, message: str) -> PlanError:
        return PlanError(self.path, self.locator.line_of(key), format_key(key) or None, message)


class Table:
    """A TOML table at ``key`` in ``doc``, with typed getters that fail precisely."""

    def __init__(self, doc: Document, key: Key, data: Mapping[str, object]) -> None:
        self.doc = doc
        self.key = key
        self.data = data

    @property
    def name(self) -> str:
        return format_key(self.key)

    def error(self, name: str | int | None, message: str) -> PlanError:
        return self.doc.error(self.key if name is None else (*self.key, name), message)

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def check_keys(self, allowed: Collection[str], elsewhere: Mapping[str, str] | None = None) -> None:
        """Reject the first key not in ``allowed``, suggesting the closest one.

        ``elsewhere`` maps keys that belong in another table to that table's header, so that
        ``workers`` under ``[source]`` says where it should go.
        """
        for name in self.data:
            if name in allowed:
                continue
            hint = did_you_mean(name, allowed)
            if not hint and elsewhere and name in elsewhere:
                hint = f" ({name} belongs in {elsewhere[name]})"
            raise self.error(name, f'unknown key "{name}" in {self.where}{hint}')

    def _typed(self, name: str, kind: type | tuple[type, ...], expected: str) -> object | None:
        value = self.data.get(name)
        if value is None:
            return None
        # bool is an int subclass in Python but not in TOML.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self.error(name, f"expected {expected}, got {type_name(value)}")
        return value

    @property
    def where(self) -> str:
        """How to name this table in a message: ``[target]``, ``mailboxes.entries[2]``, ``the plan``."""
        if not self.key:
            return "the plan"
        if isinstance(self.key[-1], int):
            return self.name
        return f"[{self.name}]"

    def missing(self, name: str) -> PlanError:
        return self.error(name, f'{self.where} is missing "{name}"')

    def string(self, name: str, *, required: bool = False) -> str | None:
        """A non-empty string (surrounding blanks removed), or None when the key is absent."""
        value = self._typed(name, str, "a string")
        if value is None:
            if required:
                raise self.missing(name)
            return None
        assert isinstance(value, str)
        text = value.strip()
        if not text:
            raise self.error(name, "must not be empty")
        return text

    def required_string(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None
        return value

    def secret_ref(self, name: str, *, required: bool = False) -> str | None:
        """A secret reference string, kept exactly as written and never echoed."""
        value = self._typed(name, str, "a string (env:NAME, file:PATH or the value)")
        if value is None:
            if required:
                raise self.missing(name)
            return None
        assert isinstance(value, str)
        if not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str | None:
        value = self._typed(name, str, "a string")
        if value is None:
            if default is None:
                raise self.missing(name)
            return default
        assert isinstance(value, str)
        if value not in choices:
            options = " | ".join(choices)
            raise self.error(name, f'"{value}" is not one of {options}{did_you_mean(value, choices)}')
        return value

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self.optional_integer(name, low=low, high=high)
        return default if value is None else value

    def optional_integer(self, name: str, *, low: int, high: int | None = None) -> int | None:
        value = self._typed(name, int, "an integer")
        if value is None:
            return None
        assert isinstance(value, int)
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.error(name, f"must be {bounds}, got {value}")
        return value

    def positive_number(self, name: str, default: float) -> float:
        value = self._typed(name, (int, float), "a number")
        if value is None:
            return default
        assert isinstance(value, int | float)
        if not value > 0:  # also rejects nan
            raise self.error(name, f"must be greater than 0, got {value}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._typed(name, bool, "true or false")
        if value is None:
            return default
        assert isinstance(value, bool)
        return value

    def table(self, name: str, *, required: bool = False) -> Table | None:
        value = self._typed(name, dict, "a table")
        if value is None:
            if required:
                raise self.doc.error((*self.key, name), f"missing table [{format_key((*self.key, name))}]")
            return None
        assert isinstance(value, dict)
        return Table(self.doc, (*self.key, name), value)

    def array(self, name: str) -> list[object] | None:
        value = self._typed(name, list, "an array")
        if value is None:
            return None
        assert isinstance(value, list)
        return value

    def string_list(self, name: str) -> tuple[str, ...]:
        items = self.array(name) or []
        out: list[str] = []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(name, f"item {index + 1} must be a string, got {type_name(item)}")
            if not item.strip():
                raise self.doc.error((*self.key, name, index), "must not be empty")
            out.append(item)
        return tuple(out)

    def string_map(self, name: str, allowed_keys: Sequence[str] | None = None) -> dict[str, str]:
        """An (inline) table of string → non-empty string, e.g. ``rename = { "Old" = "New" }``."""
        sub = self.table(name)
        if sub is None:
            return {}
        if allowed_keys is not None:
            sub.check_keys(allowed_keys)
        out: dict[str, str] = {}
        for key, value in sub.data.items():
            if not key.strip():
                raise sub.error(key, "folder name must not be empty")
            if not isinstance(value, str):
                raise sub.error(key, f"expected a string, got {type_name(value)}")
            if not value.strip():
                raise sub.error(key, "must not be empty")
            out[key] = value  # folder names are kept exactly as written
        return out


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)

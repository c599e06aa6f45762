"""The user's keys: ``keys.toml`` rebinds registry actions by their ``id``.

    [keys]
    launch = "ctrl+l"          # one key
    palette = ["f1", "ctrl+p"] # or several

It is read from ``--keys FILE``, else from ``$XDG_CONFIG_HOME/cutover/keys.toml``
(``~/.config/cutover/keys.toml``) when that exists. Everything is checked before the cockpit opens,
because a key that silently does nothing is worse than an error (k9s #2724): an unknown action id, a
key name Textual would never report, a terminal multiplexer's prefix (``ctrl+a`` screen, ``ctrl+b``
tmux: the multiplexer takes them before we see them), two actions on one key in the same view, and a
key the views or their tables need (Esc, Enter, arrows, a view's own keys such as ``s`` sort).
Every error names the file, the line and the key, like plan errors, and the CLI exits 2.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

from textual.binding import Binding
from textual.keys import KEY_DISPLAY_ALIASES, Keys, _character_to_key, format_key
from textual.screen import ModalScreen, Screen

from cockpit.actions import SCOPES, ActionSpec, all_actions
from cockpit.errors import CockpitError
from runners.plan.locate import KeyLocator

#: Keys a terminal multiplexer keeps for itself.
MULTIPLEXER_PREFIXES = {"ctrl+a": "GNU screen's prefix", "ctrl+b": "tmux's prefix"}

#: Keys the views and their tables need whatever the keymap says: meaning, and the action allowed on it.
RESERVED: dict[str, tuple[str, str | None]] = {
    "escape": ("goes back", None),
    "enter": ("opens the row under the cursor", None),
    "tab": ("moves the focus", None),
    "shift+tab": ("moves the focus", None),
    **dict.fromkeys(
        ("up", "down", "left", "right", "pageup", "pagedown", "home", "end"), ("moves the cursor", None)
    ),
    "ctrl+q": ("quits (Textual's own key)", "quit"),
    "ctrl+c": ("Textual's quit hint", None),
}

MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
#: Key names Textual reports (besides characters): f1…f24, pageup, space, …
NAMED_KEYS = frozenset(k.value for k in Keys if "+" not in k.value and k.value.isalnum()) - {"return"}

_SYNTAX_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


class KeymapError(CockpitError):
    """The keymap file is invalid; names file, line and key (``keys.toml:3: [keys.launch] …``)."""

    def __init__(self, path: str, line: int | None, key: str | None, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        where = path if line is None else f"{path}:{line}"
        what = f" [{key}]" if key else ""
        super().__init__(f"{where}:{what} {message}")


def default_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "cutover" / "keys.toml"


def find_keymap(explicit: str | Path | None = None) -> dict[str, str]:
    """The keymap of ``--keys FILE`` (which must exist), else of the default file if there is one."""
    if explicit is not None:
        return load_keymap(explicit)
    path = default_path()
    return load_keymap(path) if path.is_file() else {}


def load_keymap(path: str | Path) -> dict[str, str]:
    """Read and check a keymap file: ``{action id: "key[,key…]"}`` in Textual's key names."""
    shown = str(path)
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise KeymapError(shown, None, None, "keymap file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeymapError(shown, None, None, f"keymap file can't be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line = str(exc), None
        if match := _SYNTAX_AT_LINE.search(message):
            line, message = int(match.group(1)), f"{message[: match.start()]} (column {match.group(2)})"
        raise KeymapError(shown, line, None, f"TOML syntax error: {message}") from None
    # tomllib keeps no positions: the locator re-reads the text for the line of each key (as plans do).
    lines = KeyLocator(text)
    for name in data:
        if name != "keys":
            raise KeymapError(shown, lines.line_of((name,)), name, "unknown table: the file has one, [keys]")
    table = data.get("keys", {})
    if not isinstance(table, dict):
        raise KeymapError(shown, lines.line_of(("keys",)), "keys", "expected a table: [keys]")
    keymap = _parse(shown, table, lines)
    _check(shown, keymap, lines)
    return {action_id: ",".join(keys) for action_id, keys in keymap.items()}


def _parse(shown: str, table: dict[str, object], lines: KeyLocator) -> dict[str, list[str]]:
    specs = {s.id: s for s in all_actions()}
    keymap: dict[str, list[str]] = {}
    for action_id, value in table.items():
        line, where = lines.line_of(("keys", action_id)), f"keys.{action_id}"
        if action_id not in specs:
            raise KeymapError(shown, line, where, f"unknown action; the actions are: {', '.join(specs)}")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise KeymapError(shown, line, where, 'expected a key such as "ctrl+l", or a list of keys')
        keys: list[str] = []
        for raw in values:
            assert isinstance(raw, str)
            for part in raw.split(","):  # Textual's own "ctrl+l,f5" form works too
                key, problem = normalize(part)
                if problem:
                    raise KeymapError(shown, line, where, problem)
                if key not in keys:
                    keys.append(key)
        keymap[action_id] = keys
    return keymap


def normalize(key: str) -> tuple[str, str | None]:
    """A key as Textual names it ("?" → "question_mark", "Ctrl+L" → "ctrl+l"), or the reason it can't be one."""
    text = key.strip()
    if text in ("+", "ctrl++"):  # "+" is both the key and the separator
        text = text[:-1] + "plus"
    *mods, base = text.split("+")
    modifiers = [m.lower() for m in mods]
    example = 'examples: "L", "ctrl+l", "f5", "?" or "question_mark"'
    if not base or any(m not in MODIFIERS for m in modifiers):
        return text, f"{text!r} is not a key name ({example})"
    if len(base) == 1:
        if not base.isprintable() or base.isspace():
            return text, f"{text!r} is not a key name ({example})"
        if modifiers == ["shift"] and base.isalpha():
            return (
                text,
                f"{text!r}: write the capital letter, {base.upper()!r} (that is what the terminal sends)",
            )
        base = _character_to_key(base.lower() if modifiers else base)
    elif base.lower() in NAMED_KEYS:
        base = base.lower()
    else:
        # A character's name ("question_mark", "slash"): valid only if it names the key Textual reports.
        character = format_key(base.lower())
        if len(character) != 1 or _character_to_key(character) != base.lower():
            return text, f"{text!r} is not a key name ({example})"
        base = base.lower()
    return "+".join([*modifiers, base]), None


def _check(shown: str, keymap: Mapping[str, list[str]], lines: KeyLocator) -> None:
    specs = {s.id: s for s in all_actions()}
    # Defaults first, then the file's lines in order: of two clashing keys, the later line is blamed.
    order = {action_id: lines.line_of(("keys", action_id)) or 0 for action_id in keymap}

    def fail(spec: ActionSpec, key: str, problem: str) -> KeymapError:
        return KeymapError(shown, order.get(spec.id), f"keys.{spec.id}", f"{written(key)!r} {problem}")

    for action_id in sorted(keymap, key=order.__getitem__):
        spec = specs[action_id]
        for key in keymap[action_id]:
            if key in MULTIPLEXER_PREFIXES:
                raise fail(spec, key, f"is {MULTIPLEXER_PREFIXES[key]}: the multiplexer takes it first")
            meaning, allowed = RESERVED.get(key, (None, None))
            if meaning is not None and allowed != spec.id:
                raise fail(spec, key, f"is reserved: it {meaning}")

    for scope, scoped in SCOPES.items():
        together = scoped if scope == "app" else SCOPES["app"] + scoped  # app keys are live in every view
        where = "every view" if scope == "app" else f"the {scope}"
        owner: dict[str, ActionSpec] = {}
        for spec in sorted(together, key=lambda s: order.get(s.id, 0)):
            for key in keymap.get(spec.id, [spec.key]):
                other = owner.setdefault(key, spec)
                if other is not spec:
                    since = f"line {order[other.id]}" if other.id in keymap else "its default key"
                    problem = f"is already the key of {other.id} ({other.description}, {since}) in {where}"
                    raise fail(spec, key, problem)

    # A view's own binding comes before the app's, so it hides an app key in that view. Only keys the
    # file chose are checked: the defaults share a few on purpose ("r" re-runs checks in the readiness view).
    views = view_keys()
    for action_id in sorted(keymap, key=order.__getitem__):
        spec = specs[action_id]
        for key in keymap[action_id]:
            if key == spec.key:
                continue
            for view, what in views.get(key, []):
                if spec in SCOPES["app"] or spec in SCOPES.get(view, ()):
                    raise fail(spec, key, f"is {what!r} in the {view}: {spec.id} would not work there")


def written(key: str) -> str:
    """A key as a user writes it in the file: "?" for question_mark, but "enter", not a glyph."""
    *modifiers, base = key.split("+")
    character = base if base in KEY_DISPLAY_ALIASES else format_key(base)  # not "⏎" for enter
    return "+".join([*modifiers, character if len(character) == 1 and not character.isspace() else base])


def view_keys() -> dict[str, list[tuple[str, str]]]:
    """Keys the views bind for themselves, outside the registry: key → [(view, what it does)].

    Read from the screen classes, so a key a view gains later is checked too. Modal dialogs are left
    out: while one is open the app's keys are not live anyway.
    """
    registry = {s.id for s in all_actions()}
    found: dict[str, list[tuple[str, str]]] = {}
    for cls in _view_classes():
        view = re.sub(r"View$", "", cls.__name__).lower() + " view"
        # Only the class's own BINDINGS: Screen's (tab, ctrl+c) are reserved above or harmless.
        for binding in Binding.make_bindings(cls.__dict__.get("BINDINGS", [])):
            if binding.id in registry:
                continue
            what = binding.description or binding.action
            key, _ = normalize(binding.key)
            found.setdefault(key, []).append((view, what))
    return found


def _view_classes() -> Iterator[type[Screen[object]]]:
    import cockpit.screens

    for info in pkgutil.iter_modules(cockpit.screens.__path__):
        module = importlib.import_module(f"cockpit.screens.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and issubclass(cls, Screen)
                and not issubclass(cls, ModalScreen)
            ):
                yield cls

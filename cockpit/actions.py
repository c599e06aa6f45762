"""One registry of user actions: it drives the key bindings, the key bar, the help screen, the command
palette, the keymap file (``keys.toml``, by ``id``) and ``--read-only`` (which hides and refuses every
action that changes anything)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding
from textual.keys import format_key


@dataclass(frozen=True, slots=True)
class ActionSpec:
    #: Stable name of the action in keys.toml and Textual's keymap (``Binding(id=)``): never rename one.
    id: str
    action: str  # Textual action name (method action_<name> on the app or screen)
    key: str  # the default key; keys.toml may replace it (see ``effective_key``)
    description: str
    #: Changes something (launches, pauses, cancels): refused in read-only mode, always confirmed.
    dangerous: bool = False
    show: bool = True
    #: Also when a text box has the focus (only the palette: it must open from anywhere).
    priority: bool = False
    #: A longer explanation, for the help screen and the palette.
    note: str = ""
    #: The key bar's word for it, when not the description.
    label: str = ""


APP_ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("overview", "goto('overview')", "o", "Overview"),
    ActionSpec("readiness", "goto('readiness')", "r", "Readiness"),
    ActionSpec("mailboxes", "goto('mailboxes')", "m", "Mailboxes"),
    ActionSpec("log", "goto('log')", "l", "Log"),
    ActionSpec("user", "goto('user')", "u", "User"),
    ActionSpec("audit", "goto('audit')", "a", "Audit trail", note=":audit WAVE; / filters", label="Audit"),
    ActionSpec("command_bar", "command_bar", "colon", "Command", show=False, note=":mailboxes pilot /alice"),
    # ctrl+p, not ctrl+a/ctrl+b: those are screen's and tmux's prefixes. Shown at the key bar's right end.
    ActionSpec(
        "palette",
        "command_palette",
        "ctrl+p",
        "Command palette",
        show=False,
        priority=True,
        note="search every action by name",
        label="palette",  # Textual's own word at the key bar's right end
    ),
    ActionSpec("help", "help", "question_mark", "Help"),
    ActionSpec("quit", "quit", "q", "Quit"),
    # Not in the key bar (it is full at 80 columns): "?" and the palette list it.
    ActionSpec(
        "proxy", "goto('proxy')", "p", "Proxy", show=False, note="sessions, logins/s, failures; :proxy USER"
    ),
)

WAVE_ACTIONS: tuple[ActionSpec, ...] = (
    # In the key bar right after the view's own keys (``keybar_rank``); what doesn't fit is one "?" away.
    ActionSpec("launch", "launch", "L", "Launch wave", dangerous=True, label="Launch"),
    ActionSpec("pause", "control('pause')", "P", "Pause", dangerous=True),
    ActionSpec("resume", "control('resume')", "R", "Resume", dangerous=True),
    ActionSpec("cancel", "control('cancel')", "C", "Cancel", dangerous=True),
    ActionSpec("retry_failed", "retry_failed", "F", "Retry failed items", dangerous=True, label="Retry"),
    ActionSpec(
        "switch",
        "switch",
        "S",
        "Switch wave (its next window step)",
        dangerous=True,
        label="Switch",
        note="ready, final pass, switch, settle, close: one step, with cutover switch detached",
    ),
)

#: Actions on one failed message (the failure view).
FAILURE_ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "retry_message",
        "retry_message",
        "t",
        "Retry (its mailbox's failed items)",
        dangerous=True,
        label="Retry",
    ),
    ActionSpec("skip_message", "skip_message", "s", "Skip with a reason", dangerous=True, label="Skip"),
    ActionSpec("copy", "copy", "y", "Copy details", label="Copy"),
)

#: Where each group is bound. App bindings are live in every view, so a key may be used once across
#: "app" and any one view's group (the keymap loader checks that).
SCOPES: dict[str, tuple[ActionSpec, ...]] = {
    "app": APP_ACTIONS + WAVE_ACTIONS,
    "failure view": FAILURE_ACTIONS,
}


#: Actions a view binds itself that change state too (the readiness view's re-runs write check results).
VIEW_ACTIONS_THAT_WRITE: dict[str, str] = {"rerun": "re-running checks"}


def _what(spec: ActionSpec) -> str:
    return spec.description.split(" (")[0].lower()


@functools.cache  # pure (the action text and constants); asked for every binding on every repaint
def read_only_refusal(action: str) -> str | None:
    """The flash line's one-line reason when a read-only cockpit refuses ``action`` (a Textual action
    name, with or without its parameters), or None when the action changes nothing."""
    name = action.split("(")[0].split(".")[-1]
    what = VIEW_ACTIONS_THAT_WRITE.get(name)
    if what is None:
        spec = next((s for s in all_actions() if s.dangerous and s.action.split("(")[0] == name), None)
        if spec is None:
            return None
        if name == "control" and "(" in action:
            what = action.split("(")[1].strip("')\"")
        else:
            what = _what(spec)
    return f"read-only cockpit: {what} refused (it would write the state store)"


_WAVE = {s.action for s in WAVE_ACTIONS}
#: Esc: every view has it, so it goes with the moves between views.
_BACK = {"app.pop_screen", "back", "dismiss"}


def keybar_rank(action: str, own: bool) -> int:
    """Where the key bar (and the help screen) puts an action: the view's own keys first (``own``:
    bound by the view or its widgets: filter, sort, retry, skip, copy), then the wave's actions (launch,
    pause, resume, cancel, retry), then moving between views; help is pinned at the right end."""
    if own and action not in _BACK:
        return 0
    return 1 if action in _WAVE else 2


def bindings(specs: tuple[ActionSpec, ...]) -> list[Binding]:
    """Every action bound, dangerous ones too: read-only mode hides those through ``check_action``."""
    return [
        Binding(s.key, s.action, s.label or s.description, show=s.show, priority=s.priority, id=s.id)
        for s in specs
    ]


def all_actions() -> tuple[ActionSpec, ...]:
    return APP_ACTIONS + WAVE_ACTIONS + FAILURE_ACTIONS


def effective_key(spec: ActionSpec, keymap: Mapping[str, str]) -> str:
    """The key(s) the action is bound to now: the keymap's (comma-separated), else the default."""
    return keymap.get(spec.id) or spec.key


def display_key(keys: str) -> str:
    """How the help screen and the palette write a key: "?" not "question_mark", "ctrl+p"."""
    shown = []
    for key in keys.split(","):
        *modifiers, base = key.strip().split("+")
        shown.append("+".join([*modifiers, format_key(base)]))
    return " ".join(shown)

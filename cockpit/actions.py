"""One registry of user actions: it drives the key bindings, the footer, the help screen and
``--read-only`` (which hides and refuses every action that changes anything)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class ActionSpec:
    action: str  # Textual action name (method action_<name> on the app or screen)
    key: str
    description: str
    #: Changes something (launches, pauses, cancels): refused in read-only mode, always confirmed.
    dangerous: bool = False
    show: bool = True


APP_ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("goto('overview')", "o", "Overview"),
    ActionSpec("goto('readiness')", "r", "Readiness"),
    ActionSpec("goto('mailboxes')", "m", "Mailboxes"),
    ActionSpec("goto('log')", "l", "Log"),
    ActionSpec("goto('user')", "u", "User"),
    ActionSpec("command_bar", "colon", "Command", show=False),
    ActionSpec("help", "question_mark", "Help"),
    ActionSpec("quit", "q", "Quit"),
)

WAVE_ACTIONS: tuple[ActionSpec, ...] = (
    # Not in the footer (it must fit 80 columns); listed by "?" help and shown in read-write title hints.
    ActionSpec("launch", "L", "Launch wave", dangerous=True, show=False),
    ActionSpec("control('pause')", "P", "Pause", dangerous=True, show=False),
    ActionSpec("control('resume')", "R", "Resume", dangerous=True, show=False),
    ActionSpec("control('cancel')", "C", "Cancel", dangerous=True, show=False),
    ActionSpec("retry_failed", "F", "Retry failed items", dangerous=True, show=False),
)

#: Actions on one failed message (the failure view).
FAILURE_ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("retry_message", "t", "Retry (its mailbox's failed items)", dangerous=True),
    ActionSpec("skip_message", "s", "Skip with a reason", dangerous=True),
    ActionSpec("copy", "y", "Copy details"),
)


def bindings(specs: tuple[ActionSpec, ...], read_only: bool = False) -> list[Binding]:
    return [
        Binding(s.key, s.action, s.description, show=s.show) for s in specs if not (read_only and s.dangerous)
    ]


def all_actions() -> tuple[ActionSpec, ...]:
    return APP_ACTIONS + WAVE_ACTIONS + FAILURE_ACTIONS

"""What the views and the command palette may ask of the cockpit app, without importing it.

``cockpit.app`` imports every view and the palette; if they imported the app back (to reach its
state and navigation) the package would have a cycle, bridged with local imports. They depend on
this protocol instead, and ``CockpitApp`` satisfies it (mypy checks that in ``cockpit.app``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Protocol, cast

from textual.app import App, SystemCommand
from textual.dom import DOMNode
from textual.notifications import SeverityLevel
from textual.screen import Screen

from cockpit.actions import ActionSpec
from runners.plan.model import Plan
from runners.state.mailbox_views import MailboxQuery, MessageIssue
from runners.state.read_models.snapshot import Snapshot
from runners.state.store import StateStore


class Cockpit(Protocol):
    """The app as its views see it: the plan, the latest snapshot and rates, and the navigation."""

    plan: Plan
    read_only: bool
    snapshot: Snapshot | None
    #: Seconds between the last two snapshots (the views' rates are per second).
    snapshot_interval: float
    rates: deque[float]
    mb_rates: deque[float]
    current_rate: tuple[float, float]

    @property
    def store(self) -> StateStore: ...

    def poke(self) -> None: ...

    def poke_rows(self) -> None: ...

    def current_query(self) -> MailboxQuery | None: ...

    def key_of(self, spec: ActionSpec) -> str: ...

    def action_goto(self, view: str) -> None: ...

    def open_mailboxes(self, wave: str | None = None, filter_text: str | None = None) -> None: ...

    def open_audit(self, wave: str | None = None, filter_text: str | None = None) -> None: ...

    def open_mailbox(self, source: str) -> None: ...

    def open_failure(self, source: str, issue: MessageIssue) -> None: ...

    def action_retry_failed(self) -> None: ...

    # Textual's, used by the palette.
    def notify(self, message: str, *, severity: SeverityLevel = "information") -> None: ...

    async def run_action(self, action: str, default_namespace: DOMNode | None = None) -> bool: ...

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]: ...


def cockpit_of(app: App[object]) -> Cockpit:
    """The running app as a ``Cockpit``: views and the palette only ever run inside ``CockpitApp``."""
    return cast(Cockpit, app)

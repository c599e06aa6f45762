"""The command palette (ctrl+p): every registry action, by name, with its key; and jumps to views.

Generated from the same registry as the key bar and the help screen, so the three never disagree.
Read-only mode leaves dangerous actions out entirely; and since a chosen command goes through
``App.run_action`` like a key press, ``check_action`` still refuses one that is not allowed.
Textual's system commands that the app keeps (``Cockpit.get_system_commands``) come last, from
this provider too: with two providers the order of the list would depend on which answers first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.screen import Screen

from cockpit.actions import SCOPES, ActionSpec, all_actions, display_key
from cockpit.shell import Cockpit, cockpit_of


@dataclass(frozen=True, slots=True)
class PaletteCommand:
    title: str
    help: str
    run: Callable[[], object]


def palette_commands(app: Cockpit, screen: Screen[object]) -> list[PaletteCommand]:
    """What the palette offers on ``screen``: the app's actions, this view's own, then the views."""
    commands: list[PaletteCommand] = []
    for spec in all_actions():
        if spec.id == "palette" or (app.read_only and spec.dangerous):
            continue
        namespace: DOMNode | None = None if spec in SCOPES["app"] else screen  # None: the app's own
        if namespace is screen and not callable(getattr(screen, f"action_{spec.action.split('(')[0]}", None)):
            continue  # another view's action (retry this message, skip it) means nothing here
        notes = [
            display_key(app.key_of(spec)),
            spec.note,
            "changes things: asks first" if spec.dangerous else "",
        ]
        commands.append(
            PaletteCommand(
                spec.description, " · ".join(n for n in notes if n), partial(_run, app, spec, namespace)
            )
        )
    for wave in app.plan.waves:
        commands.append(
            PaletteCommand(
                f"Mailboxes of wave {wave}", f":mailboxes {wave}", partial(_mailboxes, app, wave, None)
            )
        )
    commands.append(
        PaletteCommand("Every mailbox (no filter)", ":mailboxes /", partial(_mailboxes, app, None, ""))
    )
    for wave in app.plan.waves:
        commands.append(
            PaletteCommand(f"Audit trail of wave {wave}", f":audit {wave}", partial(_audit, app, wave))
        )
    commands.extend(PaletteCommand(c.title, c.help, c.callback) for c in app.get_system_commands(screen))
    return commands


async def _run(app: Cockpit, spec: ActionSpec, namespace: DOMNode | None) -> None:
    if await app.run_action(spec.action, namespace):
        return
    if spec.dangerous and app.read_only:
        app.notify("read-only cockpit: nothing can be changed from here", severity="error")
    else:
        app.notify(f"{spec.description}: not available here", severity="warning")


async def _mailboxes(app: Cockpit, wave: str | None, filter_text: str | None) -> None:
    app.action_goto("overview")
    app.open_mailboxes(wave, filter_text)


async def _audit(app: Cockpit, wave: str | None) -> None:
    app.action_goto("overview")
    app.open_audit(wave)


class CockpitCommands(Provider):
    """The registry's actions and the views, for Textual's command palette (``App.COMMANDS``)."""

    def _commands(self) -> list[PaletteCommand]:
        return palette_commands(cockpit_of(self.app), self.screen)

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.title, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            if (score := matcher.match(command.title)) > 0:
                yield Hit(
                    score,
                    matcher.highlight(command.title),
                    command.run,
                    text=command.title,
                    help=command.help,
                )

"""The flash line (k9s): one line above the key bar saying why a key did nothing, e.g. a refusal of a
read-only cockpit. It covers none of the view (unlike a toast) and goes away after a few seconds."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static

#: Seconds the line stays (long enough to read twice; the next key may replace it sooner).
SHOWN_FOR = 6.0


class Flash(Static):
    DEFAULT_CSS = """
    Flash {
        dock: bottom;
        height: 1;
        offset-y: -1;
        padding: 0 1;
        background: $error-muted;
        color: $text;
        text-style: bold;
        display: none;
    }
    Flash.-info {
        background: $primary-muted;
    }
    """

    def __init__(self, text: str = "", *, error: bool = True) -> None:
        super().__init__(text, markup=False, id="flash")
        self.set_class(not error, "-info")
        self.display = bool(text)
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        if self.display:
            self._timer = self.set_timer(SHOWN_FOR, self.clear)

    def say(self, text: str, *, error: bool = True) -> None:
        self.update(text)
        self.set_class(not error, "-info")
        self.display = True
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(SHOWN_FOR, self.clear)

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.update("")
        self.display = False

    @property
    def text(self) -> str:
        return str(self.content) if self.display else ""


def flash(node: App[Any] | Widget, text: str, *, error: bool = True) -> Flash:
    """Say ``text`` in the flash line of the screen ``node`` is on (the app: its current screen)."""
    screen = node.screen if isinstance(node, App | Widget) and not isinstance(node, Screen) else node
    assert isinstance(screen, Screen)
    line = screen.query_one_optional(Flash)
    if line is None:
        line = Flash(text, error=error)
        screen.mount(line)
    else:
        line.say(text, error=error)
    return line

"""The key hints at the bottom of every view, drawn as one line of text.

Textual's Footer recomposes a widget per key whenever the bindings change (every screen switch,
every focus change, e.g. opening the filter box), and styling those widgets was the largest single
cost of a keypress in the cockpit benchmark. This bar shows the same bindings (the screen's active
ones, the registry's ``show`` flag, ``check_action`` hiding or dimming) as one ``Text``.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget


class KeyBar(Widget):
    COMPONENT_CLASSES = {"keybar--key", "keybar--description", "keybar--disabled"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        & > .keybar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .keybar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .keybar--disabled {
            text-style: dim;
        }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        #: (first cell, last cell + 1, key) of each hint, for clicks.
        self._spans: list[tuple[int, int, str]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen:
            self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keybar--key")
        description_style = self.get_component_rich_style("keybar--description")
        disabled = self.get_component_rich_style("keybar--disabled")
        text = Text(no_wrap=True, overflow="crop", end="")
        self._spans = []
        seen: set[str] = set()
        palette: tuple[str, Binding] | None = None  # shown on the right, wherever it is bound
        for key, (_node, binding, enabled, _tooltip) in self.screen.active_bindings.items():
            if binding.action == "command_palette":
                if self.app.ENABLE_COMMAND_PALETTE and palette is None:
                    palette = (key, binding)
                continue
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)  # one hint per action, as the Footer does
            start = text.cell_len
            dim = Style() if enabled else disabled
            text.append(f" {self.app.get_key_display(binding)} ", key_style + dim)
            text.append(f"{binding.description} ", description_style + dim)
            self._spans.append((start, text.cell_len, key))
        if palette is not None:
            key, binding = palette
            hint = f" {self.app.get_key_display(binding)} {binding.description} "
            gap = self.size.width - text.cell_len - len(hint)
            if gap > 0:
                text.append(" " * gap)
                start = text.cell_len
                text.append(hint, description_style)
                self._spans.append((start, text.cell_len, key))
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return

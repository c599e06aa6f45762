"""The key hints at the bottom of every view, drawn as one line of text.

Textual's Footer recomposes a widget per key whenever the bindings change (every screen switch,
every focus change, e.g. opening the filter box), and styling those widgets was the largest single
cost of a keypress in the cockpit benchmark. This bar shows the same bindings (the screen's active
ones, the registry's ``show`` flag, ``check_action`` hiding or dimming) as one ``Text``.

The view's own keys come first, then the wave's actions, then the other views
(``cockpit.actions.keybar_rank``). Help is pinned at the right end, next to the palette; when some
hints don't fit, it reads "more keys" instead of "Help": nothing is cut silently.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import ActiveBinding, Binding
from textual.screen import Screen
from textual.widget import Widget

from cockpit.actions import keybar_rank

#: Help's word when some hints did not fit the width.
MORE = "more keys"


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

    def hints(self, bindings: dict[str, ActiveBinding] | None = None) -> list[tuple[str, Binding, bool]]:
        """(key, binding, enabled) of every shown hint, in the key bar's order (help and palette excluded).
        ``bindings``: the screen's active bindings, when the caller already has them (Textual rebuilds
        them, asking ``check_action`` of each, on every read)."""
        shown: list[tuple[int, int, str, Binding, bool]] = []
        seen: set[str] = set()
        active = self.screen.active_bindings if bindings is None else bindings
        for index, (key, (node, binding, enabled, _tooltip)) in enumerate(active.items()):
            if binding.action in ("command_palette", "help") or not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)  # one hint per action, as the Footer does
            shown.append((keybar_rank(binding.action, node is not self.app), index, key, binding, enabled))
        return [(key, binding, enabled) for _, _, key, binding, enabled in sorted(shown, key=lambda h: h[:2])]

    @staticmethod
    def _pinned(bindings: dict[str, ActiveBinding], action: str) -> tuple[str, Binding] | None:
        for key, (_node, binding, _enabled, _tooltip) in bindings.items():
            if binding.action == action:
                return key, binding
        return None

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keybar--key")
        description_style = self.get_component_rich_style("keybar--description")
        disabled = self.get_component_rich_style("keybar--disabled")
        text = Text(no_wrap=True, overflow="crop", end="")
        self._spans = []
        bindings = self.screen.active_bindings  # read once a paint: each read rebuilds it
        palette = self._pinned(bindings, "command_palette") if self.app.ENABLE_COMMAND_PALETTE else None
        help_ = self._pinned(bindings, "help")
        palette_hint = f" {self.app.get_key_display(palette[1])} {palette[1].description} " if palette else ""
        help_key = f" {self.app.get_key_display(help_[1])} " if help_ else ""
        # Room for the hints: the width less help (at its longer word) and the palette at the right.
        room = self.size.width - len(palette_hint) - (len(help_key) + len(MORE) + 1 if help_ else 0)
        cut = False
        for key, binding, enabled in self.hints(bindings):
            shown_key = f" {self.app.get_key_display(binding)} "
            words = f"{binding.description} "
            if text.cell_len + len(shown_key) + len(words) > room:
                cut = True
                break
            start = text.cell_len
            dim = Style() if enabled else disabled
            text.append(shown_key, key_style + dim)
            text.append(words, description_style + dim)
            self._spans.append((start, text.cell_len, key))
        if help_ is not None:
            start = text.cell_len
            text.append(help_key, key_style)
            text.append(f"{MORE if cut else help_[1].description} ", description_style)
            self._spans.append((start, text.cell_len, help_[0]))
        if palette is not None:
            gap = self.size.width - text.cell_len - len(palette_hint)
            if gap >= 0:
                text.append(" " * gap)
                start = text.cell_len
                text.append(palette_hint, description_style)
                self._spans.append((start, text.cell_len, palette[0]))
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return


def own_keys(screen: Screen[object]) -> list[tuple[str, str, str]]:
    """(key as shown, description, action) of the keys a view binds itself (or its focused widget):
    the shown ones, then Enter and Esc (the cursor keys go without saying). The help screen lists
    them before the registry's."""
    shown: list[tuple[str, str, str]] = []
    hidden: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for key, (node, binding, _enabled, _tooltip) in screen.active_bindings.items():
        if node is screen.app or not binding.description or binding.action in seen:
            continue
        if not binding.show and key not in ("enter", "escape"):
            continue
        seen.add(binding.action)
        (shown if binding.show else hidden).append(
            (screen.app.get_key_display(binding), binding.description, binding.action)
        )
    return shown + hidden

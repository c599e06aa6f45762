"""The command palette, the keymap file and the colour options, on a state store built without servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_cockpit_snapshots import built_plan
from textual.command import CommandList, CommandPalette
from textual.filter import NoColor
from textual.pilot import Pilot
from textual.widgets import DataTable

from cockpit.actions import APP_ACTIONS, FAILURE_ACTIONS, WAVE_ACTIONS, all_actions, display_key
from cockpit.app import ANSI_THEME, NO_COLOR_THEME, CockpitApp
from cockpit.cli import main
from cockpit.errors import CockpitError
from cockpit.keymap import KeymapError, find_keymap, load_keymap
from cockpit.palette import palette_commands
from cockpit.screens.dialogs import Confirm, HelpScreen
from cockpit.screens.mailbox import FailureView
from cockpit.widgets.flash import Flash
from cockpit.widgets.keybar import KeyBar
from runners.errors import MigrationError
from runners.plan.loader import load_plan
from runners.state.read_models.snapshot import take
from runners.state.store import StateStore

DANGEROUS = {s.description for s in all_actions() if s.dangerous}


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_plan(tmp_path_factory.mktemp("cockpit-keys"))


def cockpit(plan_path: Path, **options: Any) -> CockpitApp:
    return CockpitApp(load_plan(plan_path), poll=False, **options)


def run(app: CockpitApp, scenario: Callable[[Pilot[None]], Any]) -> None:
    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.apply(take(StateStore(app.plan.state_db), app.plan))
            await pilot.pause()
            await scenario(pilot)
            await pilot.pause()  # let a screen pushed last finish mounting before the app closes

    asyncio.run(main())


async def until(pilot: Pilot[None], ready: Callable[[], bool]) -> None:
    """The palette searches in a worker: wait for its answer, not for a fixed time (30 s: a bound for
    a loaded machine, not a pace)."""
    deadline = time.monotonic() + 30
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await pilot.pause(0.05)


async def palette_search(pilot: Pilot[None], query: str) -> list[str]:
    """Open the real palette, type ``query``, return the commands it lists (title and help)."""
    app = pilot.app
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(app.screen, CommandPalette))
    await pilot.press(*query)
    await until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
    await pilot.pause(0.2)  # every provider has answered by now (one, ours)
    options = app.screen.query_one(CommandList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


# -- the palette ---------------------------------------------------------------------------------


def test_the_palette_offers_every_registry_action_with_its_key(plan_path: Path) -> None:
    app = cockpit(plan_path)

    async def scenario(pilot: Pilot[None]) -> None:
        commands = {c.title: c.help for c in palette_commands(app, app.screen)}
        for spec in APP_ACTIONS + WAVE_ACTIONS:
            if spec.id != "palette":
                assert spec.description in commands
        assert commands["Launch wave"] == "L · changes things: asks first"
        assert commands["Help"] == "?"
        # Views to jump to, and the two system commands kept; no other view's actions here.
        assert {"Mailboxes of wave pilot", "Mailboxes of wave wave-2", "Every mailbox (no filter)"} <= set(
            commands
        )
        assert {"Theme", "Screenshot"} <= set(commands) and "Quit the application" not in str(commands)
        assert not {s.description for s in FAILURE_ACTIONS} & set(commands)

        shown = await palette_search(pilot, "launch")
        assert any("Launch wave" in s and "L · changes things" in s for s in shown), shown
        await pilot.press("enter")  # runs the same action as L: its confirmation
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("escape")

        shown = await palette_search(pilot, "wave-2")
        assert any("Mailboxes of wave wave-2" in s for s in shown), shown
        await pilot.press("enter")
        await until(pilot, lambda: getattr(app.screen, "wave", None) == "wave-2")

    run(app, scenario)


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
def test_the_palette_of_a_failure_offers_its_actions(plan_path: Path, read_only: bool) -> None:
    app = cockpit(plan_path, read_only=read_only)

    async def scenario(pilot: Pilot[None]) -> None:
        issue = app.store.mailbox_detail("bob@legacy.example").issues[0]
        app.open_failure("bob@legacy.example", issue)
        await until(pilot, lambda: isinstance(app.screen, FailureView))
        titles = {c.title for c in palette_commands(app, app.screen)}
        assert "Copy details" in titles
        assert ("Skip with a reason" in titles) is not read_only

    run(app, scenario)


def test_a_read_only_palette_has_no_dangerous_action_and_refuses_one(
    plan_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = cockpit(plan_path, read_only=True)
    said: list[str] = []

    async def scenario(pilot: Pilot[None]) -> None:
        titles = {c.title for c in palette_commands(app, app.screen)}
        assert titles and not titles & DANGEROUS
        shown = await palette_search(pilot, "launch")
        assert not any("Launch wave" in s for s in shown), shown
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, CommandPalette))

        # A command built while the cockpit could still change things (read-write), run read-only:
        # it goes through run_action and check_action like a key, and is refused with a word.
        app.read_only = False
        launch = next(c for c in palette_commands(app, app.screen) if c.title == "Launch wave")
        app.read_only = True
        await launch.run()  # type: ignore[misc]
        await pilot.pause()
        assert not isinstance(app.screen, Confirm)
        said.append(app.screen.query_one(Flash).text)  # the flash line, as for its key
        assert said == ["read-only cockpit: launch wave refused (it would write the state store)"]

    run(app, scenario)
    store = StateStore(app.plan.state_db)
    assert store.query("SELECT COUNT(*) AS n FROM controls")[0]["n"] == 0


# -- the keymap ----------------------------------------------------------------------------------


def keys_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_rebound_key_works_and_help_palette_and_key_bar_show_it(plan_path: Path, tmp_path: Path) -> None:
    keys = load_keymap(
        keys_file(tmp_path, '[keys]\nlaunch = "ctrl+l"\nhelp = ["f1", "?"]\nlog = "g"\npalette = "f2"\n')
    )
    assert keys == {"launch": "ctrl+l", "help": "f1,question_mark", "log": "g", "palette": "f2"}
    app = cockpit(plan_path, keys=keys)

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("L")  # the old key does nothing now
        await pilot.pause()
        assert not isinstance(app.screen, Confirm)
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("escape")
        await pilot.pause()

        bar = app.screen.query_one(KeyBar).render().plain
        # The wave's actions come first; at 100 columns the views' keys are behind "? more keys".
        assert " ^l Launch " in bar and " L " not in bar and " f1 more keys " in bar
        assert bar.rstrip().endswith("f2 palette") and "^p" not in bar
        await pilot.resize_terminal(160, 30)
        await pilot.pause()
        bar = app.screen.query_one(KeyBar).render().plain
        assert " g Log " in bar and " l Log " not in bar and " f1 Help " in bar
        commands = {c.title: c.help for c in palette_commands(app, app.screen)}
        assert commands["Launch wave"].startswith("ctrl+l ·") and commands["Help"] == "f1 ?"

        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one("#help-table", DataTable)
        rows = {str(table.get_row_at(i)[1]): str(table.get_row_at(i)[0]) for i in range(table.row_count)}
        assert rows["Launch wave"] == "ctrl+l" and rows["Help"] == "f1 ?" and rows["Log"] == "g"
        assert rows["Command palette"] == "f2" and rows["Pause"] == "P"

    run(app, scenario)


def test_two_actions_may_swap_keys(tmp_path: Path) -> None:
    assert load_keymap(keys_file(tmp_path, '[keys]\nlaunch = "P"\npause = "L"\n')) == {
        "launch": "P",
        "pause": "L",
    }
    assert load_keymap(keys_file(tmp_path, "# nothing rebound\n")) == {}


@pytest.mark.parametrize(
    ("text", "line", "where", "words"),
    [
        pytest.param(
            '[keys]\n\nlanch = "ctrl+l"\n', 3, "[keys.lanch]", "unknown action", id="unknown-action"
        ),
        pytest.param(
            '[keys]\nlaunch = "ctrl+b"\n', 2, "[keys.launch]", "'ctrl+b' is tmux's prefix", id="tmux"
        ),
        pytest.param('[keys]\nquit = "x"\nlog = "C-a"\n', 3, "[keys.log]", "not a key name", id="bad-name"),
        pytest.param(
            '[keys]\nlog = "ctrl+a"\n', 2, "[keys.log]", "'ctrl+a' is GNU screen's prefix", id="screen"
        ),
        pytest.param(
            '[keys]\nlaunch = "ctrl+l"\npause = "ctrl+l"\n',
            3,
            "[keys.pause]",
            "'ctrl+l' is already the key of launch (Launch wave, line 2) in every view",
            id="same-key-twice",
        ),
        pytest.param(
            '[keys]\npause = "m"\n',
            2,
            "[keys.pause]",
            "'m' is already the key of mailboxes (Mailboxes, its default key)",
            id="taken-by-a-default",
        ),
        pytest.param(
            '[keys]\ncopy = "L"\n',
            2,
            "[keys.copy]",
            "'L' is already the key of launch (Launch wave, its default key) in the failure view",
            id="app-key-in-a-view",
        ),
        pytest.param(
            '[keys]\nlaunch = "c"\n',
            2,
            "[keys.launch]",
            "'c' is 'Re-run category' in the readiness view: launch would not work there",
            id="a-views-own-key",
        ),
        pytest.param('[keys]\nhelp = "enter"\n', 2, "[keys.help]", "is reserved", id="reserved"),
        pytest.param(
            "[keys]\nhelp = 1\n", 2, "[keys.help]", 'expected a key such as "ctrl+l"', id="not-a-string"
        ),
        pytest.param(
            '[keys]\nhelp = "shift+h"\n', 2, "[keys.help]", "write the capital letter, 'H'", id="shift"
        ),
        pytest.param('[key]\nhelp = "h"\n', 1, "[key]", "unknown table", id="unknown-table"),
        pytest.param('[keys]\nhelp = "h\n', 2, "", "TOML syntax error", id="syntax"),
    ],
)
def test_keymap_errors_name_the_file_the_line_and_the_key(
    tmp_path: Path, text: str, line: int, where: str, words: str
) -> None:
    path = keys_file(tmp_path, text)
    with pytest.raises(KeymapError) as raised:
        load_keymap(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}: {where}".rstrip()), message
    assert words in message, message


def test_a_bad_keymap_is_not_a_migration_error() -> None:
    # The engine's error tree is for migrations; a user's keys.toml is the cockpit's own input.
    assert not issubclass(KeymapError, MigrationError)
    assert issubclass(KeymapError, CockpitError)


def test_the_cli_exits_2_on_a_bad_keymap(
    plan_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = keys_file(tmp_path, '[keys]\nlaunch = "ctrl+b"\n')
    assert main(["tui", "--plan", str(plan_path), "--keys", str(bad)]) == 2
    assert f"cutover: error: {bad}:2: [keys.launch] 'ctrl+b' is tmux's prefix" in capsys.readouterr().err
    assert main(["tui", "--plan", str(plan_path), "--keys", str(tmp_path / "none.toml")]) == 2
    assert "none.toml: keymap file not found" in capsys.readouterr().err

    # Without --keys: $XDG_CONFIG_HOME/cutover/keys.toml if it exists, nothing if it doesn't.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert find_keymap() == {}
    (tmp_path / "config" / "cutover").mkdir(parents=True)
    (tmp_path / "config" / "cutover" / "keys.toml").write_text(
        '[keys]\nlaunch = "ctrl+l"\n', encoding="utf-8"
    )
    assert find_keymap() == {"launch": "ctrl+l"}


# -- colour --------------------------------------------------------------------------------------


def test_no_color_drops_every_colour_and_ansi_uses_the_terminals(
    plan_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_COLOR", "TEXTUAL_THEME"):
        monkeypatch.delenv(name, raising=False)
    plain = cockpit(plan_path)
    assert plain.theme == "textual-dark" and not any(isinstance(f, NoColor) for f in plain.get_line_filters())

    ansi = cockpit(plan_path, ansi=True)
    assert ansi.theme == ANSI_THEME and ansi.ansi_color is True

    # Textual's own NO_COLOR would be shades of grey (its Monochrome filter): here colours go entirely.
    monkeypatch.setenv("NO_COLOR", "1")
    bare = cockpit(plan_path)
    assert bare.theme == NO_COLOR_THEME.name and bare.ansi_color is True
    assert any(isinstance(f, NoColor) for f in bare.get_line_filters())

    async def scenario(pilot: Pilot[None]) -> None:
        # No theme switcher: another theme would lose the reverse-video cursor.
        assert "Theme" not in {c.title for c in palette_commands(bare, bare.screen)}

    run(bare, scenario)


def test_the_docs_list_every_action_id_with_its_default_key() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "cockpit.md").read_text(encoding="utf-8")
    for spec in all_actions():
        assert f"| `{spec.id}` | `{display_key(spec.key)}` |" in docs, spec.id

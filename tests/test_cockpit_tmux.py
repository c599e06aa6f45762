"""The cockpit in a real terminal: tmux runs ``cutover tui`` at 80×24, we type and read the screen.

Pilot drives Textual from inside; this drives the installed command from outside, through a real
pseudo-terminal (tmux's), as an operator would: start-up, drawing, a key, quitting with ``q`` and
the exit status. A private tmux server (``-L``, no user config) keeps it away from any other tmux.

Colours are read back with ``capture-pane -e``, which writes each cell's attributes as SGR escape
sequences: what the cockpit sent, as tmux stored it (a truecolor cell comes back as ``38;2;…``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cockpit_snapshots import T0, Clock, build_state, write_plan

import runners.state.runs as runs_module
import runners.state.store as store_module
from runners.plan.loader import load_plan

CUTOVER = Path(sys.executable).parent / "cutover"
WAIT = 30.0  # seconds for any one screen to appear (start-up imports Textual)


class Tmux:
    def __init__(self, root: Path) -> None:
        self.socket = f"cockpit-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.config = root / "tmux.conf"
        # Keep the pane after the command ends, so its exit status can be read.
        self.config.write_text("set -g remain-on-exit on\nset -g status off\n", encoding="utf-8")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=15,
            env=self.env,
            check=False,
        )

    def screen(self, escapes: bool = False) -> str:
        return self("capture-pane", *(["-e"] if escapes else []), "-p", "-t", "cockpit").stdout

    def pane(self, fmt: str) -> str:
        return self("display-message", "-p", "-t", "cockpit", fmt).stdout.strip()

    def wait_for(
        self,
        what: str,
        ready: Callable[[str], bool],
        escapes: bool = False,
        painted: Callable[[str], bool] = lambda _: True,
    ) -> str:
        """The screen once ``ready`` holds for its text and ``painted`` for its escapes (a frame can
        be captured half-drawn: its rows there, the cursor's attributes not yet)."""
        deadline = time.monotonic() + WAIT
        text = ""
        while time.monotonic() < deadline:
            text = self.screen(escapes)
            if ready(SGR.sub("", text)) and painted(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"no {what} after {WAIT:g} s; the pane shows:\n{SGR.sub('', text)}")

    def start(self, *argv: str, env: tuple[str, ...] = ()) -> None:
        """Run ``argv`` in an 80×24 pane, under ``env`` (``NAME=value``, or ``-u NAME`` to unset)."""
        command = shlex.join(["env", *env, *argv])
        started = self("new-session", "-d", "-s", "cockpit", "-x", "80", "-y", "24", "sh", "-c", command)
        assert started.returncode == 0, started.stderr


SGR = re.compile(r"\x1b\[([0-9;:]*)m")
#: The colour settings a test must control (the developer's own terminal must not leak in).
COLOUR_ENV = ("-u", "NO_COLOR", "-u", "COLORTERM", "-u", "TEXTUAL_COLOR_SYSTEM", "-u", "TEXTUAL_THEME")


def colour_codes(screen: str) -> list[str]:
    """Every colour an SGR sequence sets: "31", "104", "38;5;208", "48;2;1;2;3" (not 39/49, the defaults)."""
    found = []
    for match in SGR.finditer(screen):
        params = [int(p or 0) for p in re.split("[;:]", match.group(1))]
        i = 0
        while i < len(params):
            code = params[i]
            if code in (38, 48, 58):  # extended: 5;n (256 colours) or 2;r;g;b (truecolor)
                size = 3 if params[i + 1 : i + 2] == [5] else 5
                found.append(";".join(map(str, params[i : i + size])))
                i += size
                continue
            if 30 <= code <= 37 or 40 <= code <= 47 or 90 <= code <= 97 or 100 <= code <= 107:
                found.append(str(code))
            i += 1
    return found


def attributes_of(screen: str, text: str) -> set[str]:
    """The attributes (bold, reverse, underline) of the first cell of ``text`` on the screen."""
    names = {1: "bold", 4: "underline", 7: "reverse"}
    off = {22: "bold", 24: "underline", 27: "reverse"}
    active: set[str] = set()
    plain: list[str] = []
    cells: list[frozenset[str]] = []
    position = 0
    for match in [*SGR.finditer(screen), None]:
        end = match.start() if match else len(screen)
        for char in screen[position:end]:
            plain.append(char)
            cells.append(frozenset(active))
        if match is None:
            break
        position = match.end()
        for param in re.split("[;:]", match.group(1)):
            code = int(param or 0)
            if code == 0:
                active.clear()
            elif code in names:
                active.add(names[code])
            elif code in off:
                active.discard(off[code])
    index = "".join(plain).find(text)
    assert index >= 0, f"{text!r} is not on the screen"
    return set(cells[index])


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    server = Tmux(tmp_path)
    try:
        yield server
    finally:
        socket = server("display-message", "-p", "#{socket_path}").stdout.strip()
        server("kill-server")
        if socket:
            Path(socket).unlink(missing_ok=True)


@pytest.fixture
def plan_path(tmp_path: Path) -> Path:
    path = write_plan(tmp_path / "lab")
    with pytest.MonkeyPatch.context() as patch:
        clock = Clock(T0)
        patch.setattr(store_module, "time", clock)
        patch.setattr(runs_module, "time", clock)  # runs are stamped there
        build_state(load_plan(path), clock)
    return path


def test_cockpit_opens_in_a_real_terminal_and_quits(tmux: Tmux, plan_path: Path, tmp_path: Path) -> None:
    assert CUTOVER.exists(), f"{CUTOVER} is missing: run ./scripts/setup"
    # sh records cutover's exit status: tmux 3.3 sometimes marks the pane dead (its terminal
    # closed) without ever reaping the process, which leaves #{pane_dead_status} empty.
    status = tmp_path / "exit-status"
    cockpit = shlex.join([str(CUTOVER), "tui", "--plan", str(plan_path)])
    tmux.start("sh", "-c", f"{cockpit}; echo $? > {shlex.quote(str(status))}")

    # The overview: the readiness line and the plan's waves, drawn by the first snapshot.
    tmux.wait_for("overview", lambda s: "Readiness (pre)" in s and "pilot" in s and "wave-2" in s)

    tmux("send-keys", "-t", "cockpit", "m")
    screen = tmux.wait_for("mailboxes view", lambda s: "mailboxes" in s and "state" in s and "bob@" in s)
    assert "alice@" not in screen  # the default filter: only what needs attention

    tmux("send-keys", "-t", "cockpit", "q")
    deadline = time.monotonic() + WAIT
    while not (status.exists() and status.read_text().strip() and tmux.pane("#{pane_dead}") == "1"):
        assert time.monotonic() < deadline, f"cutover did not exit after q:\n{tmux.screen()}"
        time.sleep(0.1)
    assert status.read_text().strip() == "0", f"cutover exited {status.read_text().strip()}:\n{tmux.screen()}"


def test_no_color_sends_no_colour_and_the_cursor_stays_visible(tmux: Tmux, plan_path: Path) -> None:
    # Textual alone would turn NO_COLOR into shades of grey (256-colour codes); the cockpit drops them.
    tmux.start(str(CUTOVER), "tui", "--plan", str(plan_path), env=(*COLOUR_ENV, "NO_COLOR=1"))
    # Without colour, the table cursor (on the first wave) is shown by reverse video.
    screen = tmux.wait_for(
        "overview with its cursor in reverse video",
        lambda s: "Readiness (pre)" in s and "wave-2" in s,
        escapes=True,
        painted=lambda raw: "reverse" in attributes_of(raw, " pilot "),
    )
    assert colour_codes(screen) == [], f"colours under NO_COLOR: {sorted(set(colour_codes(screen)))}"
    assert "reverse" not in attributes_of(screen, " wave-2 ")

    tmux("send-keys", "-t", "cockpit", "m")  # the mailboxes table, a widget of its own
    # The first row, under the cursor, in reverse video (a cursor never shown so fails on the timeout).
    screen = tmux.wait_for(
        "mailboxes view with its cursor in reverse video",
        lambda s: "bob@" in s,
        escapes=True,
        painted=lambda raw: "reverse" in attributes_of(raw, "bob@"),
    )
    assert colour_codes(screen) == []
    assert "reverse" not in attributes_of(screen, "erin@")


@pytest.mark.parametrize(
    ("term", "options"),
    [
        pytest.param("screen", ("--ansi",), id="screen-ansi"),  # a 16-colour terminal (TERM=screen)
        pytest.param("screen", (), id="screen"),  # detected from TERM: colours reduced to 16
        pytest.param("tmux-256color", ("--ansi",), id="256color-ansi"),  # --ansi: 16 even where 256 work
    ],
)
def test_sixteen_colours(tmux: Tmux, plan_path: Path, term: str, options: tuple[str, ...]) -> None:
    tmux.start(str(CUTOVER), "tui", "--plan", str(plan_path), *options, env=(*COLOUR_ENV, f"TERM={term}"))
    screen = tmux.wait_for("overview", lambda s: "Readiness (pre)" in s and "wave-2" in s, escapes=True)
    codes = colour_codes(screen)
    assert codes, "no colour at all: the terminal's 16 colours were expected"
    extended = sorted({c for c in codes if c.startswith(("38;", "48;", "58;"))})
    assert not extended, f"256-colour or truecolor codes on a 16-colour screen: {extended}"
    assert attributes_of(screen, " pilot ") & {"bold", "reverse"}  # the cursor, whatever its colours


def test_without_colour_failures_still_stand_out_by_bold_and_marks(tmux: Tmux, plan_path: Path) -> None:
    """NO_COLOR: what colour shows elsewhere (a failed row, a blocker, a state) is bold or a mark."""
    tmux.start(str(CUTOVER), "tui", "--plan", str(plan_path), env=(*COLOUR_ENV, "NO_COLOR=1"))
    screen = tmux.wait_for("overview", lambda s: "Readiness (pre)" in s and "wave-2" in s, escapes=True)
    assert colour_codes(screen) == []
    assert "bold" in attributes_of(screen, "1 blocker") and "bold" not in attributes_of(screen, "1 warning")

    tmux("send-keys", "-t", "cockpit", "m")
    screen = tmux.wait_for("mailboxes view", lambda s: "erin@" in s and "▶ running" in s, escapes=True)
    assert colour_codes(screen) == []
    assert "bold" in attributes_of(screen, "erin@")  # failed: the whole row bold
    assert "bold" not in attributes_of(screen, "dave@")  # running: nothing wrong
    plain = SGR.sub("", screen)
    assert "✗ failed" in plain and "! partial" in plain and "‖ paused" in plain  # the state, marked

"""The cockpit in a real terminal: tmux runs ``cutover tui`` at 80×24, we type and read the screen.

Pilot drives Textual from inside; this drives the installed command from outside, through a real
pseudo-terminal (tmux's), as an operator would: start-up, drawing, a key, quitting with ``q`` and
the exit status. A private tmux server (``-L``, no user config) keeps it away from any other tmux.
"""

from __future__ import annotations

import os
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

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "cockpit").stdout

    def pane(self, fmt: str) -> str:
        return self("display-message", "-p", "-t", "cockpit", fmt).stdout.strip()

    def wait_for(self, what: str, ready: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + WAIT
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if ready(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"no {what} after {WAIT:g} s; the pane shows:\n{text}")


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
        build_state(load_plan(path), clock)
    return path


def test_cockpit_opens_in_a_real_terminal_and_quits(tmux: Tmux, plan_path: Path, tmp_path: Path) -> None:
    assert CUTOVER.exists(), f"{CUTOVER} is missing: run ./scripts/setup"
    # sh records cutover's exit status: tmux 3.3 sometimes marks the pane dead (its terminal
    # closed) without ever reaping the process, which leaves #{pane_dead_status} empty.
    status = tmp_path / "exit-status"
    cockpit = shlex.join([str(CUTOVER), "tui", "--plan", str(plan_path)])
    inner = f"{cockpit}; echo $? > {shlex.quote(str(status))}"
    started = tmux("new-session", "-d", "-s", "cockpit", "-x", "80", "-y", "24", "sh", "-c", inner)
    assert started.returncode == 0, started.stderr

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

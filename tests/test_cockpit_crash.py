"""The cockpit against a hostile source, in --read-only: a background task that fails is reported in
its view and the app lives on; a crash shows no local variables; no password anywhere."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot_lab import CUTOVER, write_plan
from servers.dovecot import DovecotServer
from textual.widgets import Static

from cockpit.app import CockpitApp
from cockpit.screens import triage as triage_screen
from cockpit.screens.triage import TriageView
from lab.hostile import hostile_server
from runners.plan.loader import load_plan

PASSWORD = "cockpit-crash-Secret-77"


class HostileSide:
    def __init__(self, port: int) -> None:
        self.imap_port = port
        self.master_user = "admin"


@pytest.fixture
def hostile_plan(tmp_path: Path, target_dovecot: DovecotServer) -> Iterator[Path]:
    """A plan whose source answers LOGIN with ``* OK {99999999999999999999}``, after one run of it."""
    os.environ["SRC_MASTER_PW"] = PASSWORD
    os.environ["DST_MASTER_PW"] = target_dovecot.master_password
    with hostile_server("login-literal-99999999999999999999") as server:
        plan = write_plan(
            tmp_path,
            HostileSide(server.port),
            target_dovecot,
            source_extra='login_template = "{user}*{master}"',
        )
        import subprocess

        subprocess.run(
            [*CUTOVER, "run", "--plan", str(plan), "--wave", "pilot"], capture_output=True, check=False
        )
        yield plan
    del os.environ["SRC_MASTER_PW"], os.environ["DST_MASTER_PW"]


async def triage_text(app: CockpitApp) -> tuple[str, str]:
    """The triage view's text and the whole screen (SVG), once its background work is done."""
    await app.workers.wait_for_complete()
    for _ in range(5):
        await asyncio.sleep(0)
    return str(app.screen.query_one("#triage", Static).render()), app.export_screenshot()


def test_triage_against_a_hostile_source_stays_up_and_shows_no_secret(
    hostile_plan: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        app = CockpitApp(load_plan(hostile_plan), read_only=True, poll=False)
        async with app.run_test(size=(120, 30)) as pilot:
            await app.push_screen(TriageView("alice"))
            await pilot.pause()
            text, screen = await triage_text(app)
            assert "99999999999999999999" in text  # the reason, in the view
            assert PASSWORD not in text and PASSWORD not in screen
            assert app.is_running and app.return_code is None

    asyncio.run(scenario())
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err


def test_an_unforeseen_error_in_the_triage_is_one_line_in_the_view(
    hostile_plan: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def exploding_triage(plan: object, address: str) -> None:
        password = PASSWORD  # a local, as the real crash had: it must show nowhere
        raise OverflowError(f"cannot fit 'int' into an index-sized integer ({len(password)})")

    monkeypatch.setattr(triage_screen, "triage", exploding_triage)

    async def scenario() -> None:
        app = CockpitApp(load_plan(hostile_plan), read_only=True, poll=False)
        async with app.run_test(size=(120, 30)) as pilot:
            await app.push_screen(TriageView("alice"))
            await pilot.pause()
            text, screen = await triage_text(app)
            assert (
                text
                == "could not check alice: OverflowError: cannot fit 'int' into an index-sized integer (23)"
            )
            assert PASSWORD not in screen
            assert app.is_running and app.return_code is None

    asyncio.run(scenario())
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err


def test_a_crash_shows_no_locals_and_exits_non_zero(
    hostile_plan: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    def boom() -> None:
        password = PASSWORD
        raise RuntimeError(f"broken after {len(password)} characters")

    app = CockpitApp(load_plan(hostile_plan), read_only=True, poll=False)

    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            async with app.run_test(size=(120, 30)) as pilot:
                app.call_later(boom)
                await pilot.pause()
                await pilot.pause()

    asyncio.run(scenario())
    out, err = capfd.readouterr()
    assert app.return_code == 1
    assert "RuntimeError" in out + err  # the traceback is there ...
    assert PASSWORD not in out + err  # ... without the frames' locals


def test_the_clis_unexpected_error_path_shows_no_locals(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cockpit import cli

    def broken_status(args: object) -> int:
        password = PASSWORD
        raise KeyError(len(password))

    monkeypatch.setattr(cli, "_status", broken_status)
    assert cli.main(["status", "--plan", "plan.toml"]) == cli.EXIT_UNUSABLE
    out, err = capsys.readouterr()
    assert "KeyError" in err and "unexpected error" in err
    assert PASSWORD not in out + err

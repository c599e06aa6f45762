"""Seeing the proxy: ``cutover status`` (text and JSON), the cockpit's proxy view (Textual pilot, a
read-only cockpit) and the helpdesk triage show what the proxy wrote to the real store: sessions per
backend and service, logins per second, failures in the backend's words, mailboxes queued by logins,
and a user's route with the login rewritten for the backend."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dovecot_lab import Unreachable, write_plan
from textual.widgets import Static

from cockpit.app import CockpitApp
from cockpit.screens.proxy import ProxyView
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.proxy.contracts import DecidedBy, LoginEvent, Outcome, Password, Route, Service
from runners.proxy.store_side import StoreSide
from runners.state.proxy_rows import ProxyBatch, SessionCount, SessionCounts
from runners.state.store import StateStore

CUTOVER = [sys.executable, "-m", "cockpit.cli"]
REFUSED = "NO [AUTHENTICATIONFAILED] Authentication failed."
WAVES = '[[waves]]\nname = "pilot"\nstart = "on-login"\n\n[[waves]]\nname = "full"\n'
PROXY = """
[proxy]
imap_port = 10143

[proxy.backends.target]
login_suffix = "tenant.example"

[proxy.routing]
static = { carol = "target" }
"""


def _event(login: str, outcome: Outcome, route: Route | None, detail: str = "") -> LoginEvent:
    return LoginEvent(Service.IMAP, "127.0.0.9", login, route, outcome, detail)


def _proxy_was_here(plan: Plan) -> None:
    """What a proxy leaves in the store: its journal, a queued mailbox, and its live session counts."""
    legacy = Route("alice", "legacy", "alice", DecidedBy.STORE, "wave pilot not switched")
    target = Route("carol", "target", "carol@tenant.example", DecidedBy.STATIC, "static override")
    bob = Route("bob", "legacy", "bob", DecidedBy.STORE, "wave pilot not switched")
    events = [
        _event("alice", Outcome.ACCEPTED, legacy, "OK Logged in"),
        _event("bob", Outcome.REJECTED, bob, REFUSED),
        _event("carol", Outcome.ACCEPTED, target, "OK Logged in"),
        _event("mallory", Outcome.BLOCKED, None, "too many failed logins from 127.0.0.9"),
    ]

    async def run() -> None:
        side = StoreSide.for_plan(plan)
        await side.start()
        for event in events:
            for observer in side.observers:
                await observer.login_finished(
                    event, Password("pw-1234567") if event.outcome == "accepted" else None
                )
        await side.aclose()

    asyncio.run(run())
    counts = (
        SessionCount("legacy", "imap", 3),
        SessionCount("legacy", "pop3", 1),
        SessionCount("target", "imap", 2),
    )
    # A proxy that reports for a while yet (its rows are fresh: the view shows them).
    StateStore(plan.state_db).record_proxy_batch(
        ProxyBatch(sessions=SessionCounts("mx1:42", time.time() + 600, counts))
    )


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    nowhere = Unreachable(1)
    path = write_plan(tmp_path, nowhere, nowhere, tail=PROXY + WAVES,
                      mailboxes=(("alice", "alice", "pilot"), ("bob", "bob", "pilot"), ("carol", "carol", "full")))  # fmt: skip
    loaded = load_plan(path)
    _proxy_was_here(loaded)
    return loaded


def _cutover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CUTOVER, *args], capture_output=True, text=True, timeout=120)


def test_status_shows_the_proxy_in_words_and_in_json(plan: Plan) -> None:
    text = _cutover("status", "--plan", str(plan.path))
    assert text.returncode == 0, text.stderr
    assert "proxy sessions: legacy imap 3, pop3 1; target imap 2" in text.stdout
    assert "proxy logins: 0.07/s over the last minute (2 accepted, 1 rejected, 1 blocked)" in text.stdout
    assert f"imap bob from 127.0.0.9 on legacy: rejected: {REFUSED}" in text.stdout
    assert "imap mallory from 127.0.0.9: blocked: too many failed logins" in text.stdout
    assert "wave pilot starts on login: 1 of 2 mailboxes queued by logins" in text.stdout

    data = json.loads(_cutover("status", "--plan", str(plan.path), "--output", "json").stdout)["proxy"]
    assert {(s["backend"], s["service"], s["sessions"]) for s in data["sessions"]} == {
        ("legacy", "imap", 3), ("legacy", "pop3", 1), ("target", "imap", 2)
    }  # fmt: skip
    assert data["logins_last_minute"] == 4 and data["outcomes_last_minute"]["rejected"] == 1
    assert [f["detail"] for f in data["failures"]] == ["too many failed logins from 127.0.0.9", REFUSED]
    assert data["queued_by_login"] == {"pilot": {"queued": 1, "mailboxes": 2}}


def test_the_cockpits_proxy_view_shows_the_figures_and_any_users_route(plan: Plan) -> None:
    async def scenario() -> None:
        app = CockpitApp(plan, read_only=True, poll=False)  # the helpdesk's cockpit: it only reads
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("p")
            await pilot.pause()
            assert isinstance(app.screen, ProxyView)
            figures = str(app.screen.query_one("#proxy-figures", Static).render())
            assert "SESSIONS OPEN NOW   legacy imap 3, pop3 1; target imap 2" in figures
            assert "QUEUED BY LOGINS    wave pilot: 1 of 2 mailboxes" in figures
            assert REFUSED in figures
            await pilot.press(*"carol", "enter")
            await pilot.pause()
            route = str(app.screen.query_one("#proxy-route", Static).render())
            assert "USER carol (mailbox carol, wave full)" in route
            assert "route: target as carol@tenant.example (decided by static: static override)" in route
            assert "127.0.0.9" in route and "accepted: OK Logged in" in route
            await app.workers.wait_for_complete()
            await pilot.pause()
            live = str(app.screen.query_one("#proxy-live", Static).render())
            assert "ROUTE NOW           target as carol@tenant.example (decided by static" in live
            assert "LOGIN PER BACKEND   legacy carol, target carol@tenant.example" in live
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, ProxyView)

    asyncio.run(scenario())


def test_triage_shows_the_users_route_and_last_logins_through_the_proxy(plan: Plan) -> None:
    proc = _cutover("triage", "--plan", str(plan.path), "--user", "bob", "--no-compare")
    assert "THROUGH THE PROXY" in proc.stdout
    assert "route: legacy as bob (decided by store: wave pilot not switched)" in proc.stdout
    assert f"imap       127.0.0.9       legacy   rejected: {REFUSED}" in proc.stdout
    assert "ok   proxy route      legacy as bob (decided by" in proc.stdout  # the router, asked now
    data = json.loads(_cutover("triage", "--plan", str(plan.path), "--user", "carol", "--no-compare",
                               "--output", "json").stdout)  # fmt: skip
    assert data["proxy_route"]["backend_login"] == "carol@tenant.example"
    (login,) = data["proxy_logins"]
    assert (login["service"], login["client"], login["backend"], login["outcome"]) == (
        "imap", "127.0.0.9", "target", "accepted"
    )  # fmt: skip

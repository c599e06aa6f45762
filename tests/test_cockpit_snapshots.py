"""SVG snapshots of every cockpit view at 80×24 and 160×48 (pytest-textual-snapshot).

The state store is built directly with the StateStore API under a fixed clock (no servers: the
protocol behaviour is tested elsewhere), so every figure, time and reason on screen is the same on
every run. What would still move is frozen here:

* relative times ("active 4m"): ``cockpit.format.time`` is replaced by a fixed clock;
* wall-clock times (the log view): TZ=UTC;
* the input cursor: ``cursor_blink`` is switched off on every Input before the screenshot, which
  leaves the cursor drawn solid instead of on or off depending on when the picture is taken;
* animations: ``App.animation_level = "none"`` (what TEXTUAL_ANIMATIONS=none sets);
* the header has no clock (``Header()`` without ``show_clock``), and the plan's path, shown in the
  launch confirmation, is a fixed display path instead of the test's temporary directory.

The baselines are in ``tests/__snapshots__/test_cockpit_snapshots/``. After a deliberate change to
what the cockpit draws, regenerate them and look at the differences before committing:

    .venv/bin/pytest tests/test_cockpit_snapshots.py --snapshot-update

A mismatch writes ``snapshot_report.html`` (old and new side by side) in the current directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dovecot_lab import Unreachable
from dovecot_lab import write_plan as lab_plan
from textual.pilot import Pilot
from textual.widgets import Input, Static

import runners.state.runs as runs_module
import runners.state.store as store_module
from checks.history import record
from checks.model import Finding, Outcome, Severity, State
from checks.runner import CheckRun
from cockpit.app import CockpitApp
from cockpit.screens.mailbox import FailureView
from cockpit.widgets.fleet_table import FleetTable
from runners.headers import parse_headers
from runners.model import FolderState
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state import rows
from runners.state.read_models.snapshot import take
from runners.state.store import MailboxProgress, StateStore

#: 2026-03-02 06:00:00 UTC: the first run starts here; the cockpit looks at the store at NOW.
T0 = 1_772_431_200.0
NOW = T0 + 3 * 3600
#: Shown instead of the temporary directory wherever the cockpit prints the plan's path.
DISPLAY_PLAN = Path("/srv/cutover/plan.toml")
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]

#: source, target, wave. frank, heidi and ivan are in the plan but no run has touched them.
MAILBOXES = (
    ("alice@legacy.example", "alice@example.net", "pilot"),
    ("bob@legacy.example", "bob@example.net", "pilot"),
    ("carol@legacy.example", "carol@example.net", "pilot"),
    ("dave@legacy.example", "dave@example.net", "wave-2"),
    ("erin@legacy.example", "erin@example.net", "wave-2"),
    ("frank@legacy.example", "frank@example.net", "wave-2"),
    ("grace@legacy.example", "grace@example.net", "wave-2"),
    ("heidi@legacy.example", "heidi@example.net", "finance"),
    ("ivan@legacy.example", "ivan@example.net", "finance"),
)


class Clock:
    """Stands in for the ``time`` module where only ``time()`` is used."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def write_plan(root: Path) -> Path:
    """A plan whose servers are never contacted (loopback ports nothing listens on)."""
    return lab_plan(
        root,
        Unreachable(10143),
        Unreachable(20143),
        mailboxes=MAILBOXES,
        tail="[capacity]\nwindow_hours = 4  # the overview says how much of it is left\n",
    )


def _intent(folder_id: int, uid: int, size: int, date: str, run_id: int) -> rows.Intent:
    facts = rows.SourceFacts(uid, size, date, "\\Seen")
    return rows.Intent(rows.MessageRef(folder_id, 1, str(uid)), facts, b"\x00" * 32, "INBOX", None, run_id)


def _copy(store: StateStore, folder_id: int, uids: range, run_id: int, size: int = 12_000) -> None:
    store.record_intents(_intent(folder_id, uid, size, "02-Mar-2025 08:15:00 +0100", run_id) for uid in uids)
    store.record_results(
        rows.Outcome(rows.MessageRef(folder_id, 1, str(uid)), "copied", str(uid + 1000), None) for uid in uids
    )


def build_state(plan: Plan, clock: Clock) -> None:
    """Two runs (pilot finished partial, wave-2 still running), ledgers with failures and their
    reasons, events, and a readiness run with findings of every severity. Every timestamp comes
    from ``clock``, advanced step by step."""
    store = StateStore(plan.state_db)
    try:
        _pilot(store, clock)
        _wave_2(store, clock)
        _readiness(store, clock)
    finally:
        store.close()


def _mailbox(store: StateStore, clock: Clock, index: int, run_id: int) -> int:
    source, target, wave = MAILBOXES[index]
    mailbox_id = store.upsert_mailbox(source, target, wave)
    assert store.claim_mailbox(mailbox_id, run_id) is None
    return mailbox_id


def _pilot(store: StateStore, clock: Clock) -> None:
    clock.now = T0
    run_id = store.start_run("pilot", "full", 4)
    store.event(run_id, "info", "run", "wave pilot started: 3 mailboxes, 4 workers")

    # alice: everything copied.
    clock.now = T0 + 60
    alice = _mailbox(store, clock, 0, run_id)
    for name, count in (("INBOX", 40), ("Sent", 12)):
        folder = store.folder(alice, name, name, name, None)
        _copy(store, folder.id, range(1, count + 1), run_id)
        store.folder_done(folder.id, FolderState(1, count + 1, count), count * 12_000)
    store.mailbox_progress(alice, MailboxProgress(52, 624_000, 52, 624_000, 0, 0, None))
    store.release_mailbox(alice, "ok")
    store.event(run_id, "info", "mailbox", "52 copied", mailbox=MAILBOXES[0][0])

    # bob: two messages too big for the target, one the source could not read, a folder excluded.
    clock.now = T0 + 300
    bob = _mailbox(store, clock, 1, run_id)
    inbox = store.folder(bob, "INBOX", "INBOX", "INBOX", None)
    _copy(store, inbox.id, range(1, 31), run_id)
    too_big = (
        "NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration "
        "(APPEND of 31,457,280 bytes to INBOX)"
    )
    store.record_intents(
        [
            _intent(inbox.id, 31, 31_457_280, "14-Jan-2025 17:02:11 +0100", run_id),
            _intent(inbox.id, 32, 26_214_400, "15-Jan-2025 09:40:55 +0100", run_id),
        ]
    )
    store.record_results(
        [rows.Outcome(rows.MessageRef(inbox.id, 1, key), "failed", None, too_big) for key in ("31", "32")]
    )
    store.folder_done(inbox.id, FolderState(1, 33, 32), 30 * 12_000 + 31_457_280 + 26_214_400)
    archive = store.folder(bob, "Archive.2023", "Archive/2023", "Archive/2023", None)
    _copy(store, archive.id, range(1, 9), run_id)
    store.record_unsent(
        [
            rows.Unsent(
                rows.MessageRef(archive.id, 1, "9"),
                rows.SourceFacts(9, 4_096, "03-Feb-2023 11:00:00 +0100", ""),
                "skipped",
                "source said: NO [SERVERBUG] Error while reading the message body (FETCH BODY.PEEK[] "
                "returned nothing)",
                run_id,
            )
        ]
    )
    store.folder_done(archive.id, FolderState(1, 10, 9), 8 * 12_000 + 4_096)
    store.folder(bob, "Trash", "Trash", "Trash", "matches exclude pattern 'Trash'")
    store.mailbox_progress(bob, MailboxProgress(41, 58_152_000, 38, 456_000, 2, 1, None))
    store.release_mailbox(bob, "partial")
    store.event(run_id, "warning", "message", too_big, mailbox=MAILBOXES[1][0], folder="INBOX")
    store.event(run_id, "warning", "mailbox", "38 copied, 2 failed, 1 skipped", mailbox=MAILBOXES[1][0])

    # carol: a small mailbox, copied.
    clock.now = T0 + 420
    carol = _mailbox(store, clock, 2, run_id)
    folder = store.folder(carol, "INBOX", "INBOX", "INBOX", None)
    _copy(store, folder.id, range(1, 6), run_id)
    store.folder_done(folder.id, FolderState(7, 6, 5))
    store.mailbox_progress(carol, MailboxProgress(5, 60_000, 5, 60_000, 0, 0, None))
    store.release_mailbox(carol, "ok")

    clock.now = T0 + 480
    store.finish_run(run_id, "partial", {"mailboxes": 3, "failed": 2, "skipped": 1})
    store.event(run_id, "warning", "run", "wave pilot finished: partial (2 failed, 1 skipped)")


def _wave_2(store: StateStore, clock: Clock) -> None:
    clock.now = T0 + 2 * 3600
    run_id = store.start_run("wave-2", "full", 4)
    store.event(run_id, "info", "run", "wave wave-2 started: 4 mailboxes, 4 workers")

    # erin: the source refused the login, nothing copied.
    erin = _mailbox(store, clock, 4, run_id)
    store.release_mailbox(
        erin,
        "failed",
        "source login failed: NO [AUTHENTICATIONFAILED] Authentication failed.",
        "auth",
    )
    store.event(
        run_id,
        "error",
        "mailbox",
        "source login failed: NO [AUTHENTICATIONFAILED] Authentication failed.",
        mailbox=MAILBOXES[4][0],
    )

    # grace: paused by the operator half way.
    clock.now = T0 + 2 * 3600 + 600
    grace = _mailbox(store, clock, 6, run_id)
    projects = store.folder(grace, "Projects", "Projects", "Projects", None)
    _copy(store, projects.id, range(1, 481), run_id, size=80_000)  # the ledger agrees with the counters
    store.mailbox_progress(grace, MailboxProgress(1_200, 96_000_000, 480, 38_400_000, 0, 0, "Projects"))
    store.set_mailbox_state(grace, "paused")
    store.event(run_id, "info", "control", "paused by cockpit", mailbox=MAILBOXES[6][0])

    # dave: being copied right now (updated 12 s before NOW).
    clock.now = NOW - 12
    dave = _mailbox(store, clock, 3, run_id)
    folder = store.folder(dave, "INBOX", "INBOX", "INBOX", None)
    _copy(store, folder.id, range(1, 201), run_id)
    store.mailbox_progress(dave, MailboxProgress(8_640, 310_000_000, 3_517, 126_000_000, 0, 0, "INBOX"))


def _readiness(store: StateStore, clock: Clock) -> None:
    clock.now = T0 - 86_400
    login = Finding(
        "SRC-LOGIN-002",
        Severity.BLOCKER,
        "mailbox",
        "erin@legacy.example",
        "The source refuses the master login for this mailbox",
        observed="NO [AUTHENTICATIONFAILED] Authentication failed.",
        expected="a successful master login (admin as erin@legacy.example)",
        evidence="C: a1 AUTHENTICATE PLAIN ****\nS: a1 NO [AUTHENTICATIONFAILED] Authentication failed.",
        remediation="Check that the mailbox exists on the source and that the master user may log in as it.",
    )
    spf = Finding(
        "DNS-SPF-005",
        Severity.WARNING,
        "domain",
        "example.net",
        "SPF does not include the target platform",
        observed="v=spf1 mx -all",
        expected="v=spf1 include:spf.example.net mx -all",
        evidence='example.net. 3600 IN TXT "v=spf1 mx -all"',
        remediation="Add the target platform's include before the MX switch.",
    )
    waived = Finding(
        "DNS-TTL-004",
        Severity.WARNING,
        "domain",
        "legacy.example",
        "MX TTL is long for a cutover",
        observed="86400 s",
        expected="at most 3600 s a day before the switch",
        waiver="accepted by the mail team until 2026-04-01",
    )
    survey = Finding(
        "SRC-SURVEY-003",
        Severity.INFO,
        "mailbox",
        "grace@legacy.example",
        "Largest mailbox of the plan",
        observed="1,200 messages, 96.0 MB",
    )
    passes = [
        Finding("DNS-MX-001", Severity.PASS, "domain", name, "MX records resolve", observed="mx1." + name)
        for name in ("example.net", "legacy.example")
    ]
    outcomes = [
        Outcome("SRC-LOGIN-002", "Source login", "source", State.OK, [login]),
        Outcome("SRC-SURVEY-003", "Source survey", "source", State.OK, [survey]),
        Outcome("DNS-SPF-005", "SPF", "dns", State.OK, [spf]),
        Outcome("DNS-TTL-004", "TTL", "dns", State.OK, [waived]),
        Outcome("DNS-MX-001", "MX", "dns", State.OK, passes),
        Outcome(
            "TGT-QUOTA-003",
            "Target quota",
            "target",
            State.ERROR,
            reason="GETQUOTAROOT: BAD Unknown command",
        ),
    ]
    record(store, CheckRun("pre", outcomes, started=clock.now, seconds=4.2), "all", "sam@jump-1")
    # A partial re-run later (one check): the other categories keep their findings and their time.
    clock.now = T0 - 3600
    again = [Outcome("DNS-SPF-005", "SPF", "dns", State.OK, [spf])]
    record(store, CheckRun("pre", again, started=clock.now, seconds=0.4), "dns:DNS-SPF-005", "nina@ops-2")


def built_plan(root: Path) -> Path:
    """The plan and its state store as the pictures show them (every timestamp from the clock)."""
    path = write_plan(root)
    clock = Clock(T0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module, "time", clock)
        patch.setattr(runs_module, "time", clock)  # runs are stamped there
        build_state(load_plan(path), clock)
    return path


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_plan(tmp_path_factory.mktemp("cockpit-snapshots"))


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Time, time zone and the environment variables that change what Textual draws."""
    monkeypatch.setattr("cockpit.format.time", Clock(NOW))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    for name in ("NO_COLOR", "TEXTUAL", "TEXTUAL_THEME", "TEXTUAL_COLOR_SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    yield
    monkeypatch.undo()
    time.tzset()


Step = str | Callable[[Pilot[Any]], Awaitable[None] | None]


def cockpit(plan_path: Path, *, read_only: bool = False) -> CockpitApp:
    plan = dataclasses.replace(load_plan(plan_path), path=DISPLAY_PLAN)
    app = CockpitApp(plan, read_only=read_only, poll=False)
    app.animation_level = "none"
    return app


def driver(steps: tuple[Step, ...]) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Feeds a snapshot (what the poller does twice a second) before and after every step."""

    async def drive(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, CockpitApp)
        store = StateStore(app.plan.state_db)
        try:
            app.apply(take(store, app.plan, query=app.current_query()))
            await pilot.pause()
            for step in steps:
                if isinstance(step, str):
                    await pilot.press(step)
                else:
                    result = step(pilot)
                    if result is not None:
                        await result
                await pilot.pause()
                app.apply(take(store, app.plan, query=app.current_query()))
                await pilot.pause()
        finally:
            store.close()
        for screen in app.screen_stack:
            for box in screen.query(Input):
                box.cursor_blink = False  # a solid cursor, whenever the picture is taken
        await pilot.pause()

    return drive


def focus_issues(pilot: Pilot[Any]) -> None:
    pilot.app.screen.query_one("#issues", FleetTable).focus()


def show_state_dir_as_displayed(pilot: Pilot[Any]) -> None:
    """The log view names the runner logs' directory: the temporary one, shown as DISPLAY_PLAN's."""
    app = pilot.app
    assert isinstance(app, CockpitApp)
    label = app.screen.query_one("#log-where", Static)
    text = str(label.content)
    assert str(app.plan.state_dir / "logs") in text
    label.update(text.replace(str(app.plan.state_dir), str(DISPLAY_PLAN.parent / ".cutover")))


async def headers_read(pilot: Pilot[Any]) -> None:
    """The failure view reads the message's headers from the source in a worker (tested against
    Dovecot in test_failure_detail.py); the picture shows them as read, whatever the machine runs."""
    await pilot.app.workers.wait_for_complete()
    view = pilot.app.screen
    assert isinstance(view, FailureView)
    view.headers = parse_headers(
        b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_dem_Archiv?=\r\nFrom: Bob <bob@legacy.example>\r\n"
        b"Date: Fri, 03 Feb 2023 11:00:00 +0100\r\nMessage-ID: <archive-9@legacy.example>\r\n\r\n"
    )
    view._redraw()


async def triage_done(pilot: Pilot[Any]) -> None:
    """Triage asks the (unreachable) servers in a worker: wait for its answer, whatever the machine."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


SCENARIOS: dict[str, tuple[Step, ...]] = {
    "overview": (),
    "mailboxes": ("m",),  # default filter: what needs attention
    "mailboxes_all": ("m", "slash", "enter"),  # "/" then Enter on an empty line: every mailbox
    "mailbox_detail": ("m", "enter"),  # bob, first of the not-OK ones
    "failure_detail": ("m", "enter", focus_issues, "enter", headers_read),
    "readiness": ("r",),
    "finding_detail": ("r", "enter"),  # the blocker, worst first
    "help": ("question_mark",),
    "launch_confirm": ("down", "L"),  # wave-2: its name must be typed
    "log": ("l", show_state_dir_as_displayed),
    "log_filtered": ("l", "slash", *"warning", "enter", show_state_dir_as_displayed),
    "readiness_filtered": ("r", "slash", *"wave-2", "enter"),  # a wave's name: its mailboxes' findings
    "skip_reason_refused": ("m", "enter", focus_issues, "enter", headers_read, "s", "enter"),
    "mailboxes_wide": ("m", "down", "down", "ctrl+w"),  # erin's error whole (k9s's wide view)
    "user": ("u", *"bob@legacy.example", "enter", triage_done),  # the helpdesk's one screen
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("view", list(SCENARIOS))
def test_view(view: str, size: tuple[int, int], plan_path: Path, frozen: None, snap_compare: Any) -> None:
    assert snap_compare(cockpit(plan_path), terminal_size=size, run_before=driver(SCENARIOS[view]))


@pytest.mark.parametrize("size", SIZES)
def test_read_only_footer(size: tuple[int, int], plan_path: Path, frozen: None, snap_compare: Any) -> None:
    """No Launch/Pause/Resume/Cancel in the footer, "(read-only)" in the title."""
    app = cockpit(plan_path, read_only=True)
    assert snap_compare(app, terminal_size=size, run_before=driver(()))


@pytest.mark.parametrize("size", SIZES)
def test_read_only_refusal(size: tuple[int, int], plan_path: Path, frozen: None, snap_compare: Any) -> None:
    """L in a read-only cockpit: refused in the flash line above the key bar, saying why."""
    app = cockpit(plan_path, read_only=True)
    assert snap_compare(app, terminal_size=size, run_before=driver(("L",)))


def test_the_servers_words_are_drawn_verbatim(plan_path: Path, frozen: None) -> None:
    async def scenario() -> str:
        app = cockpit(plan_path)
        async with app.run_test(size=(160, 48)) as pilot:
            await driver(("m", "enter", focus_issues, "enter"))(pilot)
            return str(app.screen.query_one("#failure", Static).render())

    # Text in square brackets is the server's, not markup: it must reach the screen unchanged.
    assert "NO [SERVERBUG] Error while reading the message body" in asyncio.run(scenario())

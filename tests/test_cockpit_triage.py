"""The helpdesk's one screen (issue #15): any address or alias of the user (the directory says whose
it is, against a real slapd), where to log in now, the migration's cumulative counts, the readiness
findings about this user, the last failure in the server's words, all reachable by scrolling at 80×24,
and the input cleared for the next search."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.slapd import LEGACY_PEOPLE, READER_DN, READER_PASSWORD, SlapdServer, find_slapd, lab_ldif
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from checks.history import record
from checks.model import Finding, Outcome, Severity, State
from checks.runner import CheckRun
from checks.triage import triage
from cockpit.app import CockpitApp
from cockpit.screens.triage import TriageView
from runners.model import FolderState
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state import rows
from runners.state.store import MailboxProgress, StateStore

TOO_BIG = "NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration"
FOLDERS = 30  # more than a 24-line screen holds


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    if find_slapd() is None:
        pytest.fail("slapd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    server = SlapdServer(lab_ldif(bulk=0)).start()
    yield server
    server.stop()


def helpdesk_plan(root: Path, slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch) -> Plan:
    """alice@legacy.test (alias alice.smith@legacy.test in the source directory); IMAP on a closed port."""
    monkeypatch.setenv("LDAP_PW", READER_PASSWORD)
    root.mkdir(parents=True, exist_ok=True)
    (root / "mailboxes.csv").write_text("source,target,wave\nalice@legacy.test,alice@example.net,pilot\n")
    imap = 'type = "imap"\nhost = "127.0.0.1"\nport = 9\nsecurity = "plain"\nauth = "master"\n'
    imap += 'master_user = "admin"\nmaster_password = "unused"\n'
    directory = (
        f'[directory.source]\nurl = "{slapd.url}"\nbase = "{LEGACY_PEOPLE}"\npreset = "inetlocalmailrecipient"\n'
        f'bind_dn = "{READER_DN}"\nbind_password = "env:LDAP_PW"\ntimeout = 5\n'
    )
    (root / "plan.toml").write_text(
        f'[source]\n{imap}\n[target]\n{imap}\n[mailboxes]\ncsv = "mailboxes.csv"\n{directory}',
        encoding="utf-8",
    )
    plan = load_plan(root / "plan.toml")
    store = StateStore(plan.state_db)
    try:
        run = store.start_run("pilot", "full", 1)
        alice = store.upsert_mailbox("alice@legacy.test", "alice@example.net", "pilot")
        store.claim_mailbox(alice, run)
        for n in range(FOLDERS):
            folder = store.folder(alice, f"F{n:02d}", f"Folder {n:02d}", f"Folder {n:02d}", None)
            ref = rows.MessageRef(folder.id, 1, "1")
            store.record_intents(
                [rows.Intent(ref, rows.SourceFacts(1, 1000, None, ""), b"\x00" * 32, "x", None, run)]
            )
            status, reason = ("failed", TOO_BIG) if n == FOLDERS - 1 else ("copied", None)
            store.record_results([rows.Outcome(ref, status, "7" if status == "copied" else None, reason)])
            store.folder_done(folder.id, FolderState(1, 2, 1), 1000)
        store.mailbox_progress(alice, MailboxProgress(FOLDERS, FOLDERS * 1000, FOLDERS, 0, 1, 0, None))
        store.release_mailbox(alice, "partial")
        store.finish_run(run, "partial", {})
        login = Finding("SRC-LOGIN-002", Severity.BLOCKER, "mailbox", "alice@legacy.test",
                        "The source refuses the master login for this mailbox",
                        observed="NO [AUTHENTICATIONFAILED] Authentication failed.")  # fmt: skip
        other = Finding("SRC-LOGIN-002", Severity.BLOCKER, "mailbox", "bob@legacy.test", "Someone else's")
        outcomes = [Outcome("SRC-LOGIN-002", "Source login", "source", State.OK, [login, other])]
        record(store, CheckRun("pre", outcomes, started=0.0, seconds=1.0), "all")
    finally:
        store.close()
    return plan


def test_an_alias_from_the_directory_finds_the_mailbox(
    tmp_path: Path, slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = helpdesk_plan(tmp_path, slapd, monkeypatch)
    result = triage(plan, "Alice.Smith@legacy.test", compare=False)
    assert result.entry is not None and result.entry.source == "alice@legacy.test"
    assert "uid=alice" in result.found_as and "source directory" in result.found_as
    assert result.log_in_to.startswith("legacy (imap://127.0.0.1:9), since before the migration")
    assert result.row is not None and result.row.done_of_total == (FOLDERS - 1, FOLDERS)
    assert [f.object_id for f in result.findings] == ["alice@legacy.test"]  # not bob's
    assert result.last_failure is not None and TOO_BIG in result.last_failure
    assert triage(plan, "nobody@legacy.test", compare=False).entry is None


def test_the_helpdesk_screen_scrolls_to_the_end_at_80x24_and_clears_the_input(
    tmp_path: Path, slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = helpdesk_plan(tmp_path, slapd, monkeypatch)

    async def scenario() -> None:
        app = CockpitApp(plan, read_only=True, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("u")
            await pilot.pause()
            assert isinstance(app.screen, TriageView)
            await pilot.press(*"a.smith@legacy.test")  # not an address of hers: nobody owns it
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            box = app.screen.query_one("#user", Input)
            assert box.value == "" and box.has_focus  # ready for the next search
            assert "not a mailbox of the plan" in str(app.screen.query_one("#triage", Static).render())
            await pilot.press(*"alice.smith@legacy.test", "enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            text = str(app.screen.query_one("#triage", Static).render())
            assert "LOG IN TO NOW\n  legacy (imap://127.0.0.1:9), since" in text
            assert f"! partial: {FOLDERS - 1:,} of {FOLDERS:,} messages copied, 1 failed" in text
            assert "blocker  SRC-LOGIN-002" in text and "Someone else's" not in text
            assert TOO_BIG in text
            scroll = app.screen.query_one("#triage-scroll", VerticalScroll)
            assert scroll.max_scroll_y > 0 and scroll.scroll_y == 0  # longer than the screen
            for _ in range(10):
                await pilot.press("pagedown")  # the input keeps the focus; the answer scrolls
            await pilot.pause()
            assert scroll.scroll_y == scroll.max_scroll_y  # the last folder can be reached
            assert box.has_focus

    asyncio.run(scenario())

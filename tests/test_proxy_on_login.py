"""A wave marked ``start = "on-login"``: a user's first accepted login through the proxy on the legacy
queues their mailbox once; a real run of the wave copies the queued mailboxes and only those."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from dovecot_lab import Unreachable, assert_same_mailbox, make_lab, write_plan
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.proxy.contracts import DecidedBy, LoginEvent, Outcome, Password, Route, Service
from runners.proxy.store_side import StoreSide
from runners.state.store import StateStore

ON_LOGIN = '[[waves]]\nname = "pilot"\nstart = "on-login"\n'


def _login(user: str, backend: str = "legacy", outcome: Outcome = Outcome.ACCEPTED) -> LoginEvent:
    route = Route(user, backend, user, DecidedBy.STORE, "")
    return LoginEvent(Service.POP3, "127.0.0.7", user, route, outcome)


def _logins(plan: Plan, *events: LoginEvent) -> None:
    async def run() -> None:
        side = StoreSide.for_plan(plan)
        await side.start()
        for event in events:
            for observer in side.observers:
                await observer.login_finished(
                    event, Password("x-secret-1") if event.outcome == "accepted" else None
                )
        await side.aclose()

    asyncio.run(run())


def test_start_must_be_launch_or_on_login(tmp_path: Path) -> None:
    nowhere = Unreachable(1)
    plan = write_plan(tmp_path, nowhere, nowhere, tail='[[waves]]\nname = "pilot"\nstart = "login"\n')
    with pytest.raises(PlanError, match=r'\[waves\[0\].start\] "login" is not one of launch \| on-login'):
        load_plan(plan)


def test_logins_queue_their_mailboxes_once_and_a_run_copies_only_those(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    for user in ("alice", "bob"):
        for n in range(3):
            imapfill.append(source_dovecot, user, "INBOX", f"Subject: {user} {n}\r\n\r\nhi\r\n".encode())
    lab = make_lab(tmp_path, source_dovecot, target_dovecot,
                   mailboxes=(("alice", "alice", "pilot"), ("bob", "bob", "pilot")), tail=ON_LOGIN)  # fmt: skip
    plan = load_plan(lab.plan)
    assert plan.starts_on_login("pilot")

    before = lab.cutover("run", "--plan", str(lab.plan), "--wave", "pilot")
    assert before.returncode == 2
    assert "starts on login: none of its 2 mailboxes is queued yet" in before.stderr

    refused = _login("bob", outcome=Outcome.REJECTED)
    elsewhere = _login("bob", backend="target")  # served by the target already: nothing to queue
    _logins(plan, _login("alice"), refused, elsewhere, _login("alice"))
    _logins(plan, _login("ALICE"))  # a new proxy process, the same user again
    store = StateStore(plan.state_db)
    assert store.queued_by_login() == {"pilot": {"alice"}}
    assert len(store.query("SELECT * FROM login_queue")) == 1
    (row,) = store.query("SELECT service, client FROM login_queue")
    assert (row["service"], row["client"]) == ("pop3", "127.0.0.7")

    code, summary = lab.run("pilot")
    assert code == 0, summary
    assert [m["source"] for m in summary["mailboxes"]] == ["alice"]
    assert_same_mailbox(source_dovecot, target_dovecot, "alice")
    assert imapfill.folder_snapshot(target_dovecot, "bob", master=True).get("INBOX", []) == []

    _logins(plan, dataclasses.replace(_login("bob")))
    code, summary = lab.run("pilot")
    assert code == 0, summary
    assert sorted(m["source"] for m in summary["mailboxes"]) == ["alice", "bob"]
    assert_same_mailbox(source_dovecot, target_dovecot, "bob")

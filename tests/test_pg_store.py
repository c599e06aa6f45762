"""The state store on PostgreSQL: what only a shared server has (a password, sessions of many processes,
notifications), the plan's ``[state] url``, and a real run, status and verify against it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import Unreachable, assert_same_mailbox, make_lab, write_plan
from servers import imapfill
from servers.dovecot import DovecotServer
from servers.postgres import PASSWORD_ENV, PostgresServer
from servers.process import free_ports

from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.state.errors import StoreError
from runners.state.open_store import open_store, store_exists, store_location
from runners.state.pg_backend import PostgresBackend
from runners.state.pg_sql import placeholders, without_password
from runners.state.store import MailboxProgress, StateStore

STATE = '[state]\nurl = "{url}"\npassword = "env:' + PASSWORD_ENV + '"\n'


def test_placeholders_outside_quotes_become_percent_s() -> None:
    assert placeholders("SELECT ? FROM t WHERE a LIKE '%?%' AND b = ?") == (
        "SELECT %s FROM t WHERE a LIKE '%%?%%' AND b = %s"
    )
    assert placeholders('SELECT "odd?name" FROM t WHERE c = ?') == 'SELECT "odd?name" FROM t WHERE c = %s'


def test_a_url_is_shown_without_its_password() -> None:
    assert (
        without_password("postgresql://ops:s3cret@db.example:5432/cutover")
        == "postgresql://ops@db.example:5432/cutover"
    )
    assert "s3cret" not in without_password("postgresql://ops@db/cutover?password=s3cret&sslmode=require")


def test_a_wrong_password_is_one_line_without_the_password(postgres_server: PostgresServer) -> None:
    store_url = postgres_server.url(postgres_server.database())
    with pytest.raises(StoreError) as caught:
        StateStore(PostgresBackend(store_url, "not-the-Secret-9"))
    text = str(caught.value)
    assert "password authentication failed" in text and "[state] password" in text
    assert "not-the-Secret-9" not in text and store_url in text


def test_a_database_that_does_not_exist_says_so(postgres_server: PostgresServer) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        StateStore(PostgresBackend(postgres_server.url("nosuchdb"), postgres_server.password))


def test_write_transactions_are_serialized_across_sessions(
    pg_url: str, postgres_server: PostgresServer
) -> None:
    """A read-then-write in one transaction keeps its meaning with many writers (as SQLite's BEGIN
    IMMEDIATE does): no increment is lost, whichever session runs when."""
    StateStore(PostgresBackend(pg_url, postgres_server.password)).close()
    threads, rounds = 4, 25

    def count_up() -> None:
        store = StateStore(PostgresBackend(pg_url, postgres_server.password))
        for _ in range(rounds):
            with store.transaction() as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'counter'").fetchone()
                value = int(row[0]) + 1 if row else 1
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('counter', ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value",
                    (str(value),),
                )
        store.close()

    workers = [threading.Thread(target=count_up) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store = StateStore(PostgresBackend(pg_url, postgres_server.password, read_only=True))
    assert store.query("SELECT value FROM meta WHERE key = 'counter'")[0]["value"] == str(threads * rounds)


def test_a_cockpit_hears_of_a_change_another_host_commits(
    pg_url: str, postgres_server: PostgresServer
) -> None:
    runner = StateStore(PostgresBackend(pg_url, postgres_server.password))
    mailbox = runner.upsert_mailbox("alice@old", "alice@new", "pilot")
    watcher = PostgresBackend(pg_url, postgres_server.password, read_only=True)
    assert watcher.wait_for_change(0.0)  # the first call starts listening: read now
    assert not watcher.wait_for_change(0.05)  # nothing committed since
    runner.mailbox_progress(mailbox, MailboxProgress(10, 100, 1, 10, 0, 0, "INBOX"))
    assert watcher.wait_for_change(60.0)
    # A write the cockpit doesn't show (the ledger) wakes nobody; its progress row does, above.
    with runner.transaction() as db:
        db.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    assert not watcher.wait_for_change(0.05)
    watcher.close()


# -- the plan's [state] url -------------------------------------------------------------------------


def _plan(tmp_path: Path, state: str) -> Path:
    side = Unreachable(free_ports(1)[0])  # no server is contacted
    return write_plan(tmp_path, side, side, tail=state)


def test_the_plan_names_the_store_by_url_and_its_password_by_reference(tmp_path: Path, pg_url: str) -> None:
    plan = load_plan(_plan(tmp_path, STATE.format(url=pg_url)))
    assert plan.state_server is not None and plan.state_server.url == pg_url
    assert "pg-test-secret" not in repr(plan)
    assert store_location(plan) == pg_url and not store_exists(plan)
    open_store(plan).upsert_mailbox("alice", "alice", "pilot")
    assert store_exists(plan)
    assert open_store(plan, read_only=True).mailbox_states() == {"alice": "pending"}


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ('[state]\nurl = "postgresql://ops:pw@db/cutover"\n', "must not hold the password"),
        ('[state]\nurl = "mysql://db/cutover"\n', "must be a PostgreSQL URL"),
        ('[state]\npassword = "env:PGPASS"\n', "[state] url, which is not set"),
    ],
)
def test_a_state_url_the_store_cannot_use_is_refused(tmp_path: Path, state: str, words: str) -> None:
    with pytest.raises(PlanError, match=words.replace("[", r"\[")) as caught:
        load_plan(_plan(tmp_path, state))
    assert ":pw@" not in str(caught.value)


# -- a real run against PostgreSQL ----------------------------------------------------------------


def test_run_status_and_verify_against_postgresql(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, pg_url: str
) -> None:
    for i in range(12):
        imapfill.append(
            source_dovecot, "alice", "INBOX", message(f"pg {i}", message_id=f"<pg{i}@example.test>")
        )
    imapfill.create_folder(source_dovecot, "alice", "Archive")
    imapfill.append(source_dovecot, "alice", "Archive", message("kept", message_id="<kept@example.test>"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot, tail=STATE.format(url=pg_url))

    code, summary = lab.run()
    assert code == 0, summary
    assert summary["totals"]["copied"] == 13
    assert_same_mailbox(source_dovecot, target_dovecot)
    assert not (lab.root / ".cutover" / "state.db").exists()  # nothing went to SQLite

    status = lab.status()
    assert status["state_db"] == pg_url
    (alice,) = status["mailboxes"]
    assert (alice["source"], alice["state"], alice["copied"], alice["failed"]) == ("alice", "ok", 13, 0)

    code, report = lab.verify()
    assert code == 0, report

    code, summary = lab.run()  # a delta pass from the same shared ledger: nothing to copy
    assert (code, summary["kind"], summary["totals"]["copied"]) == (0, "delta", 0)

    audit = lab.cutover("audit", "--plan", str(lab.plan), "--output", "json")
    assert audit.returncode == 0, audit.stderr
    assert [a["action"] for a in json.loads(audit.stdout)["actions"]] == ["launch", "launch"]


def test_an_older_database_trades_the_typed_login_index_for_the_partial_one(
    postgres_server: PostgresServer,
) -> None:
    """A database made before the partial index kept every row's typed login in
    ``proxy_logins_by_login``: brought up to the new schema text, it has the partial one instead."""
    url = postgres_server.url(postgres_server.database())
    store = StateStore(PostgresBackend(url, postgres_server.password))
    with store.transaction() as db:
        db.execute("DROP INDEX proxy_logins_by_typed_login")
        db.execute("CREATE INDEX proxy_logins_by_login ON proxy_logins (login, id)")
        db.execute("UPDATE meta SET value = 'the schema before' WHERE key = 'schema_pg'")
    store.close()

    store = StateStore(PostgresBackend(url, postgres_server.password))
    indexes = {r[0] for r in store.query("SELECT indexname FROM pg_indexes WHERE tablename = 'proxy_logins'")}
    assert "proxy_logins_by_typed_login" in indexes and "proxy_logins_by_login" not in indexes
    store.close()

"""Refusals of Exchange, each recorded in the server's words and handled as the IMAP target does:
a message too big is skipped, a full mailbox stops, a mailbox the service account may not open fails
while the wave goes on, a refused login is final and names the account, never the password."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from corpus import message
from ews_lab import (
    EWS_PASSWORD,
    SERVICE_ACCOUNT,
    TARGETS,
    EmulatorFactory,
    emulator_factory,
    ews_config,
    make_ews_lab,
)
from servers import imapfill
from servers.dovecot import DovecotServer

from lab.ews import Mailbox

__all__ = ["emulator_factory"]


def fill(server: DovecotServer, user: str, count: int, size: int = 500, folder: str = "INBOX") -> None:
    for n in range(count):
        imapfill.append(server, user, folder, message(f"{user} {n}", "x" * size), ("\\Seen",), master=True)


def reasons(lab_root: Path) -> list[str]:
    with sqlite3.connect(lab_root / ".cutover" / "state.db") as db:
        return [r for (r,) in db.execute("SELECT reason FROM messages WHERE reason IS NOT NULL")]


def mailbox_of(summary: dict[str, object], user: str) -> dict[str, object]:
    rows = summary["mailboxes"]
    assert isinstance(rows, list)
    return next(m for m in rows if m["source"] == user)


def test_a_message_over_the_mailbox_limit_is_refused_alone_in_the_servers_words(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    fill(source_dovecot, "alice", 5)
    imapfill.append(source_dovecot, "alice", "INBOX", message("huge", "y" * 60_000), master=True)
    emulator = emulator_factory(ews_config({TARGETS["alice"]: Mailbox(max_message_size=30_000)}))
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator)

    code, summary = lab.run()

    assert mailbox_of(summary, "alice")["state"] == "partial", summary
    assert sorted(i.subject for i in lab.items()) == [f"alice {n}" for n in range(5)]
    (reason,) = reasons(lab.root)
    assert "ErrorMessageSizeExceeded" in reason
    del code


def test_a_request_over_the_servers_limit_is_split_and_the_message_too_big_skipped(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    # The plan believes the default 64 MiB; the server's web.config says 300 kB: HTTP 413.
    fill(source_dovecot, "alice", 40, size=6_000)
    imapfill.append(source_dovecot, "alice", "INBOX", message("too big", "z" * 400_000), master=True)
    emulator = emulator_factory(
        ews_config({TARGETS["alice"]: Mailbox(max_message_size=10_000_000)}, request_limit=300_000)
    )
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator)

    _, summary = lab.run()

    assert mailbox_of(summary, "alice")["state"] == "partial", summary
    assert len(lab.items()) == 40
    (reason,) = reasons(lab.root)
    assert "HTTP 413" in reason
    assert lab.emulator.http_statuses.get(413, 0) >= 1


def test_a_full_mailbox_stops_and_the_wave_goes_on(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    fill(source_dovecot, "alice", 30, size=2_000)
    fill(source_dovecot, "bob", 3)
    emulator = emulator_factory(
        ews_config({TARGETS["alice"]: Mailbox(quota_bytes=20_000), TARGETS["bob"]: Mailbox()})
    )
    lab = make_ews_lab(
        tmp_path / "lab", source_dovecot, emulator, mailboxes=(("alice", "pilot"), ("bob", "pilot"))
    )

    _, summary = lab.run()

    alice = mailbox_of(summary, "alice")
    assert alice["state"] == "failed", summary
    assert "ErrorQuotaExceeded" in str(alice["error"])
    assert 0 < len(lab.items("alice")) < 30
    assert mailbox_of(summary, "bob")["state"] == "ok"
    assert len(lab.items("bob")) == 3


def test_impersonation_refused_fails_that_mailbox_only(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    fill(source_dovecot, "alice", 3)
    fill(source_dovecot, "bob", 3)
    emulator = emulator_factory(ews_config(impersonate=frozenset({TARGETS["alice"]})))
    lab = make_ews_lab(
        tmp_path / "lab", source_dovecot, emulator, mailboxes=(("alice", "pilot"), ("bob", "pilot"))
    )

    _, summary = lab.run()

    assert mailbox_of(summary, "alice")["state"] == "ok", summary
    bob = mailbox_of(summary, "bob")
    assert bob["state"] == "failed"
    assert "ErrorImpersonateUserDenied" in str(bob["error"])
    assert len(lab.items("alice")) == 3


def test_a_refused_login_is_final_and_names_the_account_never_the_password(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    fill(source_dovecot, "alice", 2)
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator_factory())
    lab.extra_env = {"EWS_PW": "not-the-password-9"}

    proc = lab.cutover("run", "--plan", str(lab.plan), "--wave", "pilot", "--output", "json")

    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "401" in out and SERVICE_ACCOUNT in out
    assert "not-the-password-9" not in out and EWS_PASSWORD not in out
    assert lab.items() == []
    assert not [p for p in lab.root.rglob("*") if p.is_file() and b"not-the-password-9" in p.read_bytes()]


def test_a_corrupt_item_fails_alone_and_goes_in_on_the_next_run(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    fill(source_dovecot, "alice", 10)
    emulator = emulator_factory()
    emulator.inject("item_error", "CreateItem", count=1, code="ErrorItemCorrupt")
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator)

    _, summary = lab.run()

    assert mailbox_of(summary, "alice")["state"] == "partial", summary
    assert len(lab.items()) == 9
    (reason,) = reasons(lab.root)
    assert "ErrorItemCorrupt" in reason
    code, again = lab.run()
    assert code == 0, again
    assert sorted(i.subject for i in lab.items()) == [f"alice {n}" for n in range(10)]


def test_ntlm_logs_in(
    tmp_path: Path, source_dovecot: DovecotServer, emulator_factory: EmulatorFactory
) -> None:
    fill(source_dovecot, "alice", 3)
    emulator = emulator_factory(ews_config(auth_modes=("ntlm",)))
    lab = make_ews_lab(tmp_path / "lab", source_dovecot, emulator, auth="ntlm")

    code, summary = lab.run()

    assert code == 0, summary
    assert len(lab.items()) == 3

"""A fault that is not any mailbox's own stops the wave with one line (exit 2), failing no mailbox."""

from __future__ import annotations

import socket
from pathlib import Path

from corpus import message
from dovecot_lab import Lab, Unreachable, write_plan
from servers import imapfill
from servers.dovecot import DovecotServer

USERS = {"alice": "a", "bob": "b", "carol": "c", "dave": "d", "erin": "e"}
WAVE = tuple((user, user, "w") for user in USERS)


def _lab(
    tmp_path: Path,
    dovecot_factory: object,
    *,
    source_side: object = None,
    target_users: dict[str, str] = USERS,
) -> Lab:
    source: DovecotServer = dovecot_factory(users=USERS)  # type: ignore[operator]
    target: DovecotServer = dovecot_factory(users=target_users)  # type: ignore[operator]
    for user in USERS:
        imapfill.append(source, user, "INBOX", message(f"for {user}"))
    plan = write_plan(tmp_path / "lab", source_side or source, target, mailboxes=WAVE)  # type: ignore[arg-type]
    return Lab(source, target, tmp_path / "lab", plan)


def _run(lab: Lab, env: dict[str, str], workers: int = 3) -> tuple[int, list[str]]:
    proc = lab.cutover("run", "--plan", str(lab.plan), "--wave", "w", "--workers", str(workers), env=env)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cutover: error:")]
    return proc.returncode, errors


def _nothing_failed(lab: Lab) -> None:
    status = lab.status()
    assert [m["state"] for m in status["mailboxes"] if m["state"] == "failed"] == []
    assert all(m["error"] is None for m in status["mailboxes"])
    assert status["runs"][0]["status"] == "failed"


def test_a_refused_master_login_stops_the_wave_after_the_first_few(
    tmp_path: Path, dovecot_factory: object
) -> None:
    lab = _lab(tmp_path, dovecot_factory)
    env = lab.env | {"DST_MASTER_PW": "not-the-password-7f3a"}

    code, errors = _run(lab, env, workers=1)

    assert code == 2
    (line,) = errors
    assert "first 3 mailboxes all failed the same way" in line
    assert f"imap://127.0.0.1:{lab.target.imap_port} refuses the login" in line
    assert "AUTHENTICATIONFAILED" in line and "not-the-password-7f3a" not in line
    _nothing_failed(lab)
    # The wave stopped there: the mailboxes after the first few were never started (the launch
    # queued them for the fleet's runners: pending, nothing copied).
    rows = {m["source"]: m for m in lab.status()["mailboxes"]}
    assert {s for s, m in rows.items() if m["state"] != "pending" or m["copied"]} <= {"alice", "bob", "carol"}
    assert rows["dave"]["state"] == rows["erin"]["state"] == "pending"
    # Once the password is right, the same wave runs through.
    assert _run(lab, lab.env)[0] == 0


def test_a_server_nothing_listens_on_stops_the_wave(tmp_path: Path, dovecot_factory: object) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # a port that is free: nothing listens on it
        closed_port = placeholder.getsockname()[1]
    lab = _lab(tmp_path, dovecot_factory, source_side=Unreachable(closed_port))

    code, errors = _run(lab, lab.env)

    assert code == 2
    (line,) = errors
    assert f"imap://127.0.0.1:{closed_port} can't be reached (connect): Connection refused" in line
    _nothing_failed(lab)


def test_a_secret_that_is_not_set_stops_the_wave(tmp_path: Path, dovecot_factory: object) -> None:
    lab = _lab(tmp_path, dovecot_factory)
    env = {k: v for k, v in lab.env.items() if k != "SRC_MASTER_PW"}

    code, errors = _run(lab, env)

    assert code == 2
    (line,) = errors
    assert "a secret can't be read: environment variable SRC_MASTER_PW is not set" in line
    _nothing_failed(lab)


def test_a_fault_of_some_mailboxes_only_fails_those(tmp_path: Path, dovecot_factory: object) -> None:
    # The target knows only alice: the others' logins are refused, but alice got through first.
    lab = _lab(tmp_path, dovecot_factory, target_users={"alice": "a"})

    code, errors = _run(lab, lab.env, workers=1)

    assert code == 1 and errors == []
    states = {m["source"]: m["state"] for m in lab.status()["mailboxes"]}
    assert states == {"alice": "ok", "bob": "failed", "carol": "failed", "dave": "failed", "erin": "failed"}

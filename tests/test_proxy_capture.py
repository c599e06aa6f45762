"""Credential capture: a password a backend accepted is sealed (AES-GCM) into the real store, opened
by the engine for a ``captured:`` mailbox of a legacy Dovecot that has no master account, rotated,
expired and forgotten; and it never shows in any output, log or the database file."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import imaplib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from dovecot_lab import CUTOVER, Lab, multiset, rewrite_table
from proxy_harness import eventually, write_proxy_plan
from servers import imapfill
from servers.dovecot import DovecotServer, _write_passwd_file

from cockpit.commands.proxy_forget import forget_user
from cockpit.commands.proxy_rekey import rekey_plan
from runners.connectors.captured import Keyring, NotCaptured, captured_password
from runners.errors import PlanError, SecretError
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.plan.proxy_capture_options import CapturedSecret
from runners.proxy.contracts import DecidedBy, LoginEvent, Outcome, Password, Route, Service
from runners.proxy.store_side import StoreSide
from runners.state.store import StateStore

ALICE_PW = "Alice-Captured-7f3k9q"
BOB_PW = "Bob-Never-Seen-2x8w"
KEY = base64.b64encode(b"k" * 32).decode()
NEW_KEY = (b"n" * 32).hex()
CAPTURE_ONLY = '[proxy.capture]\nkey = "env:CAPTURE_KEY"\n'
#: A plan's proxy (never started in the tests that only seal and open) and its capture.
CAPTURE = "[proxy]\nimap_port = 10143\n\n" + CAPTURE_ONLY


def _plan_files(root: Path, tail: str = CAPTURE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mailboxes.csv").write_text("source,target,wave,source_password\nalice,alice,pilot,captured:\n")
    (root / "plan.toml").write_text(
        '[source]\ntype = "imap"\nhost = "127.0.0.1"\nport = 143\nsecurity = "plain"\nauth = "password"\n\n'
        '[target]\ntype = "imap"\nhost = "127.0.0.1"\nport = 144\nsecurity = "plain"\nauth = "master"\n'
        'master_user = "admin"\nmaster_password = "env:DST_MASTER_PW"\n\n'
        f'[mailboxes]\ncsv = "mailboxes.csv"\n\n{tail}'
    )
    return root / "plan.toml"


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


def _accepted(user: str, backend: str = "legacy") -> LoginEvent:
    route = Route(user, backend, user, DecidedBy.STORE, "wave pilot not switched")
    return LoginEvent(Service.IMAP, "127.0.0.5", user, route, Outcome.ACCEPTED, "OK Logged in")


def _capture(plan: Plan, *events: tuple[LoginEvent, str | None]) -> None:
    """What the proxy does at each login: tell every observer of its side, then stop cleanly."""

    async def logins() -> None:
        side = StoreSide.for_plan(plan)
        await side.start()
        for event, password in events:
            for observer in side.observers:
                await observer.login_finished(event, Password(password) if password else None)
        await side.aclose()

    asyncio.run(logins())


# -- the plan ------------------------------------------------------------------------------------


def test_capture_settings_errors_name_the_file_line_and_key(tmp_path: Path) -> None:
    plan = _plan_files(tmp_path / "a", tail="[proxy.capture]\nenabled = true\nexpiry = 3\n")
    with pytest.raises(PlanError) as exc:
        load_plan(plan)
    assert (exc.value.line, exc.value.key) == (_line_of(plan, "expiry = 3"), "proxy.capture.expiry")
    assert 'did you mean "expiry_days"' in str(exc.value)

    plan = _plan_files(tmp_path / "b", tail="[proxy.capture]\nenabled = true\n")
    with pytest.raises(PlanError, match=r"\[proxy.capture.key\] .*has no key") as exc:
        load_plan(plan)
    assert exc.value.line == _line_of(plan, "[proxy.capture]")

    plan = _plan_files(tmp_path / "c", tail="")
    with pytest.raises(
        PlanError, match=r'mailboxes.csv:2: \[source_password\] "captured:" needs \[proxy.capture\]'
    ):
        load_plan(plan)


def test_captured_rows_are_bound_to_the_store_and_keys_and_never_revealed_as_literals(tmp_path: Path) -> None:
    plan = load_plan(_plan_files(tmp_path))
    secret = plan.mailboxes[0].source_password
    assert isinstance(secret, CapturedSecret)
    assert (secret.backend, secret.state_db) == ("legacy", plan.state_db)
    assert repr(secret) == "Secret(captured:)"
    with pytest.raises(SecretError):
        secret.reveal()


# -- sealing, rotation, expiry -------------------------------------------------------------------


def test_a_sealed_password_opens_only_for_its_user_and_with_a_known_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTURE_KEY", KEY)
    plan = load_plan(_plan_files(tmp_path))
    keyring = Keyring(plan.capture)
    sealed = keyring.seal("alice", "legacy", "alice", ALICE_PW)
    assert ALICE_PW.encode() not in sealed.ciphertext and ALICE_PW not in repr(sealed)
    assert keyring.open(sealed) == ALICE_PW
    with pytest.raises(SecretError, match="not this user's"):
        keyring.open(dataclasses.replace(sealed, user="bob"))  # a row moved onto another user
    monkeypatch.setenv("CAPTURE_KEY", NEW_KEY)
    with pytest.raises(SecretError, match=f"key {sealed.key_id}"):
        Keyring(load_plan(_plan_files(tmp_path)).capture).open(sealed)
    monkeypatch.setenv("CAPTURE_KEY", "too short")
    with pytest.raises(SecretError, match="not 32 bytes") as exc:
        Keyring(plan.capture)
    assert "too short" not in str(exc.value)


def test_rotation_reseals_under_the_new_key_and_the_old_one_can_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTURE_KEY", KEY)
    plan = load_plan(_plan_files(tmp_path))
    _capture(plan, (_accepted("alice"), ALICE_PW))
    monkeypatch.setenv("OLD_KEY", KEY)
    monkeypatch.setenv("CAPTURE_KEY", NEW_KEY)
    rotated = load_plan(_plan_files(tmp_path, tail=CAPTURE + 'previous_keys = ["env:OLD_KEY"]\n'))
    assert captured_password(_secret(rotated), "alice") == ALICE_PW  # the old key still opens it
    cli = subprocess.run([*CUTOVER, "proxy", "rekey", "--plan", str(rotated.path), "--output", "json"],
                         capture_output=True, text=True, env=dict(os.environ), timeout=120)  # fmt: skip
    assert json.loads(cli.stdout) == {"resealed": 1, "current": 0, "expired": 0}, cli.stderr
    assert rekey_plan(rotated).resealed == 0
    monkeypatch.delenv("OLD_KEY")
    assert captured_password(_secret(load_plan(_plan_files(tmp_path))), "alice") == ALICE_PW


def test_an_expired_or_forgotten_password_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTURE_KEY", KEY)
    plan = load_plan(_plan_files(tmp_path, tail=CAPTURE + "expiry_days = 1\n"))
    store = StateStore(plan.state_db)
    old = Keyring(plan.capture).seal("alice", "legacy", "alice", ALICE_PW, now=time.time() - 2 * 86400)
    from runners.state.proxy_rows import ProxyBatch

    store.record_proxy_batch(ProxyBatch(credentials=[old]))
    with pytest.raises(NotCaptured, match="expired after 1 days"):
        captured_password(_secret(plan), "alice")
    store.prune_proxy_journal()
    assert store.query("SELECT * FROM captured_credentials") == []

    _capture(plan, (_accepted("alice"), ALICE_PW), (_accepted("bob"), BOB_PW))
    assert forget_user(plan, "alice") == 1
    with pytest.raises(NotCaptured):
        captured_password(_secret(plan), "alice")
    assert forget_user(plan, "alice") == 0
    assert captured_password(_secret(plan), "bob") == BOB_PW


def test_only_a_password_the_backend_accepted_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTURE_KEY", KEY)
    plan = load_plan(_plan_files(tmp_path))
    refused = dataclasses.replace(
        _accepted("alice"), outcome=Outcome.REJECTED, detail="NO [AUTHENTICATIONFAILED]"
    )
    _capture(plan, (refused, "a-wrong-guess-123"), (_accepted("bob"), None))
    assert StateStore(plan.state_db).query("SELECT * FROM captured_credentials") == []
    assert [r.outcome for r in StateStore(plan.state_db).proxy_logins("alice")] == ["rejected"]


def _secret(plan: Plan) -> CapturedSecret:
    secret = plan.mailboxes[0].source_password
    assert isinstance(secret, CapturedSecret)
    return secret


# -- a real run off a legacy with no master account ----------------------------------------------


def _no_master(server: DovecotServer) -> None:
    assert server.root is not None
    _write_passwd_file(server.root / "masters", [])
    with pytest.raises(imaplib.IMAP4.error):
        client = imaplib.IMAP4(server.host, server.imap_port)
        try:
            client.login(server.master_login("alice"), server.master_password)
        finally:
            client.shutdown()


def test_a_password_captured_through_the_running_proxy_lets_the_engine_copy_the_mailbox(
    tmp_path: Path, dovecot_factory: Any, target_dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy: DovecotServer = dovecot_factory(users={"alice": ALICE_PW, "bob": BOB_PW})
    imapfill.create_folder(legacy, "alice", "Archive")
    for n in range(12):
        imapfill.append(
            legacy, "alice", ["INBOX", "Archive"][n % 2], f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode()
        )
    _no_master(legacy)
    root = tmp_path / "lab"
    plan_path, ports = write_proxy_plan(root, legacy, target_dovecot, tail=CAPTURE_ONLY)
    rewrite_table(plan_path, "source", lambda t: t.replace('auth = "master"', 'auth = "password"')
                  .replace(f'master_user = "{legacy.master_user}"\n', "").replace('master_password = "env:SRC_MASTER_PW"\n', ""))  # fmt: skip
    (root / "mailboxes.csv").write_text("source,target,wave,source_password\nalice,alice,pilot,captured:\n"
                                        "bob,bob,pilot,captured:\n")  # fmt: skip
    env = {**os.environ, "CAPTURE_KEY": KEY, "DST_MASTER_PW": target_dovecot.master_password}
    plan = load_plan(plan_path)
    store = StateStore(plan.state_db)

    proxy = subprocess.Popen([*CUTOVER, "proxy", "--plan", str(plan_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert proxy.stdout is not None and "imap" in proxy.stdout.readline()
        alice = imaplib.IMAP4("127.0.0.1", ports["imap"])
        assert alice.login("alice", ALICE_PW)[0] == "OK"  # the legacy accepted it, through the proxy
        open_now = eventually(lambda: [(s.backend, s.service, s.sessions) for s in store.proxy_sessions()],
                              [("legacy", "imap", 1)], timeout=60)  # fmt: skip
        assert open_now == [("legacy", "imap", 1)]  # published by the proxy every few seconds
        alice.logout()
        bob = imaplib.IMAP4("127.0.0.1", ports["imap"])
        with pytest.raises(imaplib.IMAP4.error):
            bob.login("bob", "a-wrong-guess-123")  # refused: nothing is kept
        bob.shutdown()
        assert eventually(lambda: store.captured_credential("alice", "legacy") is not None, True)
    finally:
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(60) == 0
    assert store.proxy_sessions() == []  # a proxy that stops takes its counts away
    assert store.captured_credential("bob", "legacy") is None
    outcomes = [(r.user, r.backend, r.outcome) for r in store.proxy_logins("bob")]
    assert outcomes == [("bob", "legacy", "rejected")] and store.proxy_logins("bob")[0].detail

    lab = Lab(legacy, target_dovecot, root, plan_path)
    code, summary = lab.run("pilot", env=env)
    assert code == 1, summary  # bob failed, alone
    states = {m["source"]: m for m in summary["mailboxes"]}
    assert states["alice"]["state"] == "ok"
    assert states["bob"]["state"] == "failed"
    assert "no password captured by the proxy" in states["bob"]["error"]
    src = multiset(imapfill.folder_snapshot(legacy, "alice"))
    assert src == multiset(imapfill.folder_snapshot(target_dovecot, "alice", master=True))
    status = lab.cutover("status", "--plan", str(plan_path), "--failures", env=env)
    triage = lab.cutover("triage", "--plan", str(plan_path), "--user", "alice", "--no-compare", env=env)
    assert "route: legacy as alice" in triage.stdout
    forgot = lab.cutover("proxy", "forget", "alice", "--plan", str(plan_path), env=env)
    assert (forgot.returncode, forgot.stdout.strip()) == (0, "forgot 1 captured password(s) of alice")
    assert store.captured_credential("alice", "legacy") is None

    outputs = [str(summary), status.stdout, status.stderr, triage.stdout, triage.stderr,
               proxy.stdout.read() if proxy.stdout else "", proxy.stderr.read() if proxy.stderr else ""]  # fmt: skip
    outputs += [p.read_bytes().decode("latin-1") for p in plan.state_dir.rglob("*") if p.is_file()]
    assert all(ALICE_PW not in text and BOB_PW not in text for text in outputs)
    assert os.stat(plan.state_db).st_mode & 0o077 == 0

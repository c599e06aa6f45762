"""A migration lab into Exchange: a real Dovecot source, the strict EWS emulator (lab/ews) as the
target, a plan of ``type = "ews"`` and ``cutover`` runs in a subprocess, as an operator runs them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dovecot_lab import json_answer, run_cutover
from servers.dovecot import DovecotServer

from lab.ews import EwsConfig, EwsEmulator, Item, Mailbox

SERVICE_ACCOUNT = "svc-migrate@corp.example"
#: The service account's password: every test asserts it never shows up anywhere.
EWS_PASSWORD = "Ews-Secret-7731"
#: Source users (Dovecot) → target mailboxes (the emulator).
TARGETS = {"alice": "alice@corp.example", "bob": "bob@corp.example", "carol": "carol@corp.example"}


def ews_config(
    mailboxes: dict[str, Mailbox] | None = None,
    *,
    impersonate: frozenset[str] = frozenset({"*"}),
    **options: Any,
) -> EwsConfig:
    return EwsConfig(
        accounts={SERVICE_ACCOUNT: EWS_PASSWORD},
        impersonation={SERVICE_ACCOUNT: impersonate},
        mailboxes=mailboxes
        if mailboxes is not None
        else {address: Mailbox() for address in TARGETS.values()},
        **options,
    )


EmulatorFactory = Callable[..., EwsEmulator]


@pytest.fixture
def emulator_factory() -> Iterator[EmulatorFactory]:
    """``emulator_factory(config)`` starts an emulator; all stop at teardown, and none may have
    met a request it doesn't know (that would be a client speaking something Exchange refuses)."""
    started: list[EwsEmulator] = []

    def start(config: EwsConfig | None = None) -> EwsEmulator:
        emulator = EwsEmulator(config or ews_config()).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        unknown = emulator.unknown_requests
        emulator.stop()
        assert not unknown, f"the emulator met requests it doesn't model: {unknown}"


@dataclass
class EwsLab:
    source: DovecotServer
    emulator: EwsEmulator
    root: Path
    plan: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SRC_MASTER_PW"] = self.source.master_password
        env["EWS_PW"] = EWS_PASSWORD
        return env | self.extra_env

    def cutover(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Any:
        return run_cutover(self.root, args, env or self.env, timeout)

    def run(
        self, wave: str = "pilot", *extra: str, env: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        proc = self.cutover(
            "run", "--plan", str(self.plan), "--wave", wave, "--output", "json", *extra, env=env
        )
        assert EWS_PASSWORD not in proc.stdout + proc.stderr
        return json_answer(proc, "run")

    def verify(self, wave: str = "pilot", *extra: str) -> tuple[int, dict[str, Any]]:
        proc = self.cutover("verify", "--plan", str(self.plan), "--wave", wave, "--output", "json", *extra)
        assert EWS_PASSWORD not in proc.stdout + proc.stderr
        return json_answer(proc, "verify")

    def items(self, user: str = "alice", folder: str = "inbox") -> list[Item]:
        return self.emulator.items(TARGETS[user], folder)

    def leaked(self) -> list[str]:
        """Files under the lab (state, logs, reports) that contain the service account's password."""
        found = []
        for path in self.root.rglob("*"):
            if path.is_file() and EWS_PASSWORD.encode() in path.read_bytes():
                found.append(str(path))
        return found


def write_ews_plan(
    root: Path,
    source: DovecotServer,
    emulator: EwsEmulator,
    *,
    mailboxes: tuple[tuple[str, str], ...] = (("alice", "pilot"),),
    target_extra: str = "",
    tail: str = "",
    auth: str = "basic",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mailboxes.csv").write_text(
        "source,target,wave\n" + "".join(f"{s},{TARGETS[s]},{w}\n" for s, w in mailboxes), encoding="utf-8"
    )
    plan = root / "plan.toml"
    plan.write_text(
        f"""
[source]
type = "imap"
host = "127.0.0.1"
port = {source.imap_port}
security = "plain"
auth = "master"
master_user = "{source.master_user}"
master_password = "env:SRC_MASTER_PW"

[target]
type = "ews"
host = "127.0.0.1"
port = {emulator.port}
auth = "{auth}"
service_account = "{SERVICE_ACCOUNT}"
password = "env:EWS_PW"
ca_file = "{emulator.ca_file}"
{target_extra}

[mailboxes]
csv = "mailboxes.csv"

{tail}
""",
        encoding="utf-8",
    )
    return plan


def make_ews_lab(root: Path, source: DovecotServer, emulator: EwsEmulator, **options: Any) -> EwsLab:
    return EwsLab(source, emulator, root, write_ews_plan(root, source, emulator, **options))

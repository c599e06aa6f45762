"""A migration lab for the Graph target: a real Dovecot source, the Graph emulator (lab/graph) as the
target, and ``cutover`` run as an operator would (a subprocess, over loopback HTTPS)."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dovecot_lab import json_answer, run_cutover
from servers import imapfill
from servers.dovecot import DovecotServer

from lab.graph import AppConfig, GraphConfig, GraphEmulator, Item, UserConfig
from runners.connectors.graph_kept import property_key
from runners.connectors.graph_message import KEY_PROPERTY
from runners.connectors.graph_target import GraphTarget
from runners.pacing import forget_paces
from runners.plan.graph_options import GraphOptions
from runners.plan.model import Endpoint, Secret

#: The app's secret: long and unusual, so that finding it anywhere is a leak, not a coincidence.
SECRET = "graph-app-secret-5b1e0c7d9a"
CLIENT_ID = "8f14e45f-ceea-467a-9575-0e3c1a2b7d11"
DOMAIN = "contoso.test"
ALL_ROLES = frozenset(
    {
        "Mail.ReadWrite",
        "Mail-Advanced.ReadWrite.All",
        "MailboxSettings.Read",
        "User.Read.All",
        "Domain.Read.All",
    }
)


def address(user: str) -> str:
    return f"{user}@{DOMAIN}"


def tenant(*users: str, roles: frozenset[str] = ALL_ROLES, **options: Any) -> GraphConfig:
    """A tenant with our app and a mailbox for each user (``UserConfig`` for special ones)."""
    made = tuple(UserConfig(address(u)) for u in users)
    return GraphConfig(apps=(AppConfig(CLIENT_ID, secret=SECRET, roles=roles),), users=made, **options)


@dataclass
class GraphLab:
    source: DovecotServer
    emulator: GraphEmulator
    root: Path
    plan: Path

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ) | {"SRC_MASTER_PW": self.source.master_password, "GRAPH_SECRET": SECRET}

    def cutover(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run_cutover(self.root, args, env or self.env, timeout)

    def run(
        self, wave: str = "pilot", *extra: str, env: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        proc = self.cutover(
            "run", "--plan", str(self.plan), "--wave", wave, "--output", "json", *extra, env=env
        )
        return json_answer(proc, "run")

    def verify(self, wave: str = "pilot", *extra: str) -> tuple[int, dict[str, Any]]:
        proc = self.cutover("verify", "--plan", str(self.plan), "--wave", wave, "--output", "json", *extra)
        return json_answer(proc, "verify")


def make_graph_lab(
    root: Path,
    source: DovecotServer,
    emulator: GraphEmulator,
    *,
    users: tuple[str, ...] = ("alice",),
    target_extra: str = "",
    tail: str = "",
) -> GraphLab:
    root.mkdir(parents=True, exist_ok=True)
    entries = ", ".join(f'{{ source = "{u}", target = "{address(u)}", wave = "pilot" }}' for u in users)
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
type = "graph"
tenant_id = "{emulator.config.tenant_id}"
client_id = "{CLIENT_ID}"
client_secret = "env:GRAPH_SECRET"
graph_url = "{emulator.graph_url}"
authority_url = "{emulator.graph_url}"
ca_file = "{emulator.ca_file}"
{target_extra}

[mailboxes]
entries = [ {entries} ]

{tail}
""",
        encoding="utf-8",
    )
    return GraphLab(source, emulator, root, plan)


def prop(item: Item, property_id: str) -> str | None:
    """An item's extended property, ids compared by value (the service spells them its own way)."""
    wanted = property_key(property_id)
    return next((v for k, v in item.properties.items() if property_key(k) == wanted), None)


def key_of(item: Item) -> str | None:
    return prop(item, KEY_PROPERTY)


def keys_held(emulator: GraphEmulator, user: str) -> Counter[str | None]:
    """How many items carry each key: every value must be 1."""
    return Counter(key_of(i) for i in emulator.items(address(user)))


def source_count(source: DovecotServer, user: str = "alice") -> int:
    return sum(len(v) for v in imapfill.folder_snapshot(source, user, master=True).values())


def open_target(emulator: GraphEmulator, user: str = "alice", **pace: Any) -> GraphTarget:
    """A JSON-route session whose own pace allows more than the emulator (so the emulator's 429s
    are what the client meets), unless ``pace`` sets its byte window."""
    forget_paces()
    options = GraphOptions(
        tenant_id=emulator.config.tenant_id, client_id=CLIENT_ID, client_secret=Secret(SECRET),
        authority_url=emulator.graph_url, graph_url=emulator.graph_url, route="json",
        pace_requests=100_000, pace_request_window=1.0,
        **{f"pace_{name}": value for name, value in pace.items()},
    )  # fmt: skip
    host, _, port = emulator.graph_url.removeprefix("https://").partition("/")[0].rpartition(":")
    endpoint = Endpoint(type="graph", host=host, port=int(port), ca_file=emulator.ca_file, graph=options)
    return GraphTarget(endpoint, address(user))

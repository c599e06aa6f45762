"""``load_plan``: read a plan TOML file (and its mailbox CSV) into a validated ``Plan``.

Every problem raises ``PlanError(path, line, key, message)`` for the first thing wrong. Secrets
are only referenced here, never read: a plan must load on a box that doesn't have them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from runners.errors import PlanError
from runners.plan.captured_refs import bind_captured
from runners.plan.endpoint import ENDPOINT_KEYS, build_endpoint
from runners.plan.exposure import exposure_problems
from runners.plan.locate import KeyLocator
from runners.plan.mailboxes import MAILBOXES_KEYS, load_mailboxes
from runners.plan.model import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_MESSAGES,
    DEFAULT_WORKERS,
    FolderRules,
    Plan,
)
from runners.plan.paths import resolve_path
from runners.plan.proxy_capture_options import load_capture
from runners.plan.readiness import READINESS_TABLES, load_readiness
from runners.plan.runner_options import load_lease_seconds
from runners.plan.state_options import load_state_server
from runners.plan.tables import Document, Table
from runners.plan.waves import load_waves
from runners.plan.window_options import load_window
from runners.special_use import SPECIAL_KEYS

if TYPE_CHECKING:
    from runners.plan.switch_model import SwitchSettings

PLAN_TABLES = (
    "source",
    "target",
    "mailboxes",
    "waves",
    "folders",
    "state",
    "run",
    "security",
    "switch",
    "window",
    *READINESS_TABLES,
    "proxy",
    "runner",
)
FOLDERS_KEYS = ("rename", "exclude", "special")
SPECIAL_USES = tuple(SPECIAL_KEYS)  # runners/special_use.py holds the one list
STATE_KEYS = ("dir", "url", "password")
RUN_KEYS = ("workers", "batch_messages", "batch_bytes", "connections_per_mailbox")
SECURITY_KEYS = ("strict_permissions",)

#: Where a key belongs when it's written in the wrong table ("workers belongs in [run]").
_ELSEWHERE: dict[str, str] = {
    **dict.fromkeys(ENDPOINT_KEYS, "[source] or [target]"),
    **dict.fromkeys(MAILBOXES_KEYS, "[mailboxes]"),
    **dict.fromkeys(FOLDERS_KEYS, "[folders]"),
    **dict.fromkeys(STATE_KEYS, "[state]"),
    **dict.fromkeys(RUN_KEYS, "[run]"),
    **dict.fromkeys(SECURITY_KEYS, "[security]"),
}

_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_AT_END = re.compile(r"\s*\(at end of document\)$")


def load_plan(path: str | Path) -> Plan:
    """Load and validate the plan at ``path``. Raises ``PlanError`` naming file, line and key."""
    shown = str(path)
    plan_path = Path(path).expanduser()
    text = _read_text(plan_path, shown)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(shown, text, exc) from None

    # Not resolve(): a symlinked plan keeps its relative paths next to the link the operator sees.
    base_dir = Path(os.path.abspath(plan_path)).parent
    root = Table(Document(shown, KeyLocator(text)), (), data)
    root.check_keys(PLAN_TABLES, _ELSEWHERE)

    source = build_endpoint(_required_table(root, "source"), "source", base_dir, _ELSEWHERE)
    target = build_endpoint(_required_table(root, "target"), "target", base_dir, _ELSEWHERE)
    folders = _folders(root.table("folders"))
    state_dir = _state_dir(root.table("state"), base_dir)
    workers, batch_messages, batch_bytes = _run_settings(root.table("run"))
    mailboxes = load_mailboxes(_required_table(root, "mailboxes"), base_dir, source, target, _ELSEWHERE)

    plan = Plan(
        path=base_dir / plan_path.name,
        source=source,
        target=target,
        mailboxes=mailboxes,
        wave_settings=load_waves(root, mailboxes),
        folders=folders,
        state_dir=state_dir,
        workers=workers,
        batch_messages=batch_messages,
        batch_bytes=batch_bytes,
        readiness=load_readiness(root, base_dir),
        switch=_switch(root, base_dir),
        window=load_window(root),
        proxy=None,
        capture=load_capture(root),
        state_server=load_state_server(root.table("state"), base_dir),
        lease_seconds=load_lease_seconds(root),
        connections_per_mailbox=_connections_per_mailbox(root.table("run")),
    )
    if root.table("proxy") is not None:
        # Imported here: the proxy's settings are a tenth of what a plan's modules cost to import
        # (`python -X importtime`), and a plan without [proxy] (every runner's) never needs them.
        from runners.plan.proxy_options import load_proxy

        plan = dataclasses.replace(plan, proxy=load_proxy(root, base_dir, source, target, plan.switch))
    plan = bind_captured(plan, plan.capture, root)
    _refuse_exposed_secrets(root.table("security"), plan)
    return plan


def _switch(root: Table, base_dir: Path) -> SwitchSettings | None:
    if root.table("switch") is None:
        return None
    # Imported here, like the proxy's: its parser and model (seven dataclasses) are for a plan with
    # a [switch], and a runner's plan has none.
    from runners.plan.switch_options import load_switch

    return load_switch(root, base_dir)


def _read_text(plan_path: Path, shown: str) -> str:
    try:
        raw = plan_path.read_bytes()
    except FileNotFoundError:
        raise PlanError(shown, None, None, "plan file not found") from None
    except OSError as exc:
        raise PlanError(shown, None, None, f"plan file can't be read: {exc.strerror}") from None
    try:
        # utf-8-sig: editors on Windows like to add a BOM, which tomllib would reject.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PlanError(shown, line, None, "is not valid UTF-8") from None


def _syntax_error(shown: str, text: str, exc: tomllib.TOMLDecodeError) -> PlanError:
    """tomllib says "... (at line N, column M)"; keep its words and turn the position into a line."""
    message = str(exc)
    line: int | None = None
    if match := _AT_LINE.search(message):
        line = int(match.group(1))
        message = f"{message[: match.start()]} (column {match.group(2)})"
    elif match := _AT_END.search(message):
        line = max(1, len(text.splitlines()))
        message = f"{message[: match.start()]} (at end of file)"
    return PlanError(shown, line, None, f"TOML syntax error: {message}")


def _required_table(root: Table, name: str) -> Table:
    table = root.table(name, required=True)
    assert table is not None
    return table


def _folders(table: Table | None) -> FolderRules:
    if table is None:
        return FolderRules()
    table.check_keys(FOLDERS_KEYS, _ELSEWHERE)
    return FolderRules(
        rename=table.string_map("rename"),
        exclude=table.string_list("exclude"),
        special=table.string_map("special", allowed_keys=SPECIAL_USES),
    )


def _state_dir(table: Table | None, base_dir: Path) -> Path:
    if table is None:
        return base_dir / ".cutover"
    table.check_keys(STATE_KEYS, _ELSEWHERE)
    value = table.string("dir")
    return base_dir / ".cutover" if value is None else resolve_path(base_dir, value)


def _refuse_exposed_secrets(table: Table | None, plan: Plan) -> None:
    """``[security] strict_permissions = true``: a secret other accounts could read refuses the plan
    (without it, commands that connect warn: ``runners.plan.exposure``)."""
    if table is None:
        return
    table.check_keys(SECURITY_KEYS, _ELSEWHERE)
    if table.boolean("strict_permissions", False) and (problems := exposure_problems(plan)):
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise table.error("strict_permissions", problems[0] + more)


def _run_settings(table: Table | None) -> tuple[int, int, int]:
    """``[run]``: workers, batch_messages, batch_bytes (defaults match ``Plan``)."""
    if table is None:
        return DEFAULT_WORKERS, DEFAULT_BATCH_MESSAGES, DEFAULT_BATCH_BYTES
    table.check_keys(RUN_KEYS, _ELSEWHERE)
    return (
        table.integer("workers", DEFAULT_WORKERS, low=1, high=64),
        table.integer("batch_messages", DEFAULT_BATCH_MESSAGES, low=1, high=1000),
        table.integer("batch_bytes", DEFAULT_BATCH_BYTES, low=1),
    )


def _connections_per_mailbox(table: Table | None) -> int | None:
    """``[run] connections_per_mailbox``: None (the engine's choice) when not given."""
    if table is None or "connections_per_mailbox" not in table:
        return None
    return table.integer("connections_per_mailbox", 1, low=1, high=16)

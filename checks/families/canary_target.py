"""What the checks read from the target as the canary (``checks.canary``), on one read-only session.

The folder checks need the target's layout, TGT-SIZE-006 the APPENDLIMIT an IMAP target advertises
after login: one login serves both (``ctx.fact("canary-target", ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.canary import canary as canary_of
from checks.context import CheckContext
from runners.connectors.imap_target import ImapTarget
from runners.engine.sessions import open_target
from runners.errors import MigrationError
from runners.imap.wire import ImapConnection
from runners.model import TargetLayout


@dataclass(frozen=True, slots=True)
class Limit:
    size: int
    source: str  # where it comes from, with the server's own words for APPENDLIMIT


@dataclass(frozen=True, slots=True)
class CanaryTarget:
    #: None when the canary could not log in (``error`` says why).
    layout: TargetLayout | None
    appendlimit: Limit | None
    error: MigrationError | None = None


def canary_target(ctx: CheckContext) -> CanaryTarget:
    return ctx.fact("canary-target", lambda: _read(ctx))


def _read(ctx: CheckContext) -> CanaryTarget:
    endpoint = ctx.plan.target
    try:
        canary = canary_of(ctx.plan)
        with ctx.server(f"target:{endpoint.address}"):
            session = open_target(endpoint, canary)
            try:
                layout = session.layout()
                limit = (
                    ask_appendlimit(session.conn, canary.target) if isinstance(session, ImapTarget) else None
                )
                return CanaryTarget(layout, limit)
            finally:
                session.close()
    except MigrationError as exc:  # ProtocolError included: each check decides what it means
        return CanaryTarget(None, None, exc)


def ask_appendlimit(conn: ImapConnection, user: str) -> Limit | None:
    reply = conn.check(b"CAPABILITY", "CAPABILITY")
    line = next(
        (
            p[0].decode("utf-8", "replace").strip()
            for p in reply.untagged
            if p[0].startswith(b"* CAPABILITY ")
        ),
        "",
    )
    words = [w for w in line.split()[2:] if w.upper().startswith("APPENDLIMIT")]
    if not words:
        return None
    _, _, value = words[0].partition("=")
    if value.isdigit():
        return Limit(int(value), f"{conn.server} after login as {user}: {line}")
    # Bare APPENDLIMIT: the limit differs per folder; INBOX stands for the mailbox.
    status = conn.check(b'STATUS "INBOX" (APPENDLIMIT)', "STATUS INBOX (APPENDLIMIT)")
    for parts in status.untagged:
        text = parts[0].decode("utf-8", "replace").strip()
        tokens = text.replace("(", " ").replace(")", " ").split()
        if "APPENDLIMIT" in (t.upper() for t in tokens):
            found = tokens[[t.upper() for t in tokens].index("APPENDLIMIT") + 1]
            if found.isdigit():
                return Limit(int(found), f"{conn.server} after login as {user}: {line}\n{text}")
    return None

"""The source mailbox's own quota (RFC 9208 GETQUOTAROOT on INBOX): a mailbox at its limit may be
refusing mail right now, and its users see bounces that the cutover will be blamed for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runners.connectors.base import SourceSession
from runners.connectors.imap_source import ImapSource
from runners.errors import ProtocolError

#: ``* QUOTA "root" (STORAGE 10 512 MESSAGE 3 1000)``: resource name, usage, limit, repeated.
_QUOTA = re.compile(rb'^\*\s+QUOTA\s+("(?:[^"\\]|\\.)*"|\S+)\s+\((.*)\)\s*$', re.IGNORECASE)
_RESOURCE = re.compile(rb"([A-Za-z][A-Za-z0-9_-]*)\s+(\d+)\s+(\d+)")


@dataclass(frozen=True, slots=True)
class QuotaResource:
    """One limited resource of a quota root, in the server's units (STORAGE: units of 1,024 octets)."""

    root: str
    resource: str
    usage: int
    limit: int

    @property
    def share(self) -> float:
        """Usage over limit (1.0 = full); a limit of 0 is full from the start."""
        return self.usage / self.limit if self.limit else float("inf")

    def describe(self) -> str:
        if self.resource.upper() == "STORAGE":
            return f"{self.usage * 1024:,} of {self.limit * 1024:,} bytes ({self.share:.0%}) in quota root {self.root!r}"
        return (
            f"{self.usage:,} of {self.limit:,} {self.resource} ({self.share:.0%}) in quota root {self.root!r}"
        )


def read_quota(session: SourceSession) -> tuple[list[QuotaResource] | None, str | None]:
    """The INBOX's quota resources, or (None, None) when the source has no quota to ask (no QUOTA
    capability, not IMAP), or (None, the server's words) when it refused to tell."""
    if not isinstance(session, ImapSource) or not session.conn.has("QUOTA"):
        return None, None
    conn = session.conn
    try:
        reply = conn.command(b"GETQUOTAROOT INBOX", "GETQUOTAROOT INBOX")
    except ProtocolError as exc:
        if exc.retryable:  # the connection broke: the pass reports it for the whole mailbox
            raise
        return None, exc.server_text or str(exc)
    if reply.status != "OK":
        return None, f"{reply.status} {reply.text}"
    return parse_quota([parts[0] for parts in reply.untagged]), None


def parse_quota(lines: list[bytes]) -> list[QuotaResource]:
    """Every resource of every ``* QUOTA`` line; never raises (other lines are ignored)."""
    out: list[QuotaResource] = []
    for line in lines:
        match = _QUOTA.match(line.strip())
        if match is None:
            continue
        root = match.group(1).strip(b'"').decode("utf-8", "replace")
        for name, usage, limit in _RESOURCE.findall(match.group(2)):
            out.append(QuotaResource(root, name.decode("ascii").upper(), int(usage), int(limit)))
    return out

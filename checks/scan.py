"""The source scan: every message read once, looking for what breaks migrations.

Shared by the SRC-READ, SRC-LINE, SRC-MIME, SRC-MSGID and SRC-CATCH checks through ``ctx.fact``.
Only what the checks need is kept per message (UID, size, the problem), never bodies.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from checks.context import CheckContext
from checks.registry import SkipCheck
from checks.survey import FolderSurvey, MailboxSurvey, survey
from runners.connectors.base import SourceSession
from runners.engine.sessions import open_source
from runners.errors import FetchConnectionLost, ProtocolError
from runners.model import FetchFailure

#: Exchange rejects lines longer than this over IMAP ("BAD Command Argument Error 11").
MAX_LINE = 10_000
_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*\S")
_RECIPIENT = re.compile(rb"(?im)^(?:delivered-to|x-original-to|envelope-to):[ \t]*<?([^\s<>;]+)")
SCAN_WORKERS = 8


@dataclass(frozen=True, slots=True)
class MessageProblem:
    folder: str
    uid: int
    size: int
    detail: str


@dataclass(slots=True)
class MailboxScan:
    mailbox: str
    unreadable: list[MessageProblem] = field(default_factory=list)
    empty: list[MessageProblem] = field(default_factory=list)
    long_lines: list[MessageProblem] = field(default_factory=list)
    no_message_id: list[MessageProblem] = field(default_factory=list)
    mime_defects: list[MessageProblem] = field(default_factory=list)
    #: Envelope recipients seen in INBOX headers (Delivered-To, X-Original-To), lower-cased.
    inbox_recipients: Counter[str] = field(default_factory=Counter)
    scanned: int = 0
    error: str | None = None


def scan(ctx: CheckContext) -> list[MailboxScan]:
    if not ctx.plan.readiness.scan:
        raise SkipCheck("[checks] scan = false: the source messages are not read")
    return ctx.fact("scan", lambda: _scan_all(ctx))


def _scan_all(ctx: CheckContext) -> list[MailboxScan]:
    surveyed = [m for m in survey(ctx).mailboxes if m.error is None]
    with ThreadPoolExecutor(max_workers=max(1, min(SCAN_WORKERS, len(surveyed)))) as pool:
        return list(pool.map(lambda m: _scan_mailbox(ctx, m), surveyed))


def _scan_mailbox(ctx: CheckContext, surveyed: MailboxSurvey) -> MailboxScan:
    out = MailboxScan(surveyed.entry.source)
    held: list[SourceSession] = []  # one session for the whole mailbox, replaced after a drop
    try:
        with ctx.server(f"source:{ctx.plan.source.address}"):
            for folder in surveyed.folders:
                if folder.error is None and folder.metas:
                    _scan_folder(ctx, surveyed, folder, out, held)
    except ProtocolError as exc:
        out.error = str(exc)
    finally:
        for session in held:
            session.close()
    return out


def _scan_folder(
    ctx: CheckContext,
    surveyed: MailboxSurvey,
    folder: FolderSurvey,
    out: MailboxScan,
    held: list[SourceSession],
) -> None:
    """Read every message of a folder; a server that hangs up on one message gets it isolated.

    Like the engine: after a drop mid-FETCH the undelivered messages are fetched one by one, and one
    that drops the connection on its own is recorded as unreadable with the server's words.
    """
    where = folder.folder.display
    inbox = folder.folder.path == ("INBOX",)
    pending = {m.uid: m for m in folder.metas}
    singly: set[int] = set()
    for _attempt in range(len(folder.metas) + 2):
        if not held:
            held.append(open_source(ctx.plan.source, surveyed.entry))
        session = held[0]
        session.isolate(singly)
        try:
            for item in session.fetch(folder.folder, list(pending.values())):
                meta = pending.pop(item.meta.uid, item.meta)
                out.scanned += 1
                if isinstance(item, FetchFailure):
                    out.unreadable.append(MessageProblem(where, meta.uid, meta.size, item.reason))
                else:
                    _inspect(out, where, meta.uid, item.body, inbox)
            return
        except FetchConnectionLost as exc:
            held.pop().close()
            if exc.single and exc.uids[0] in pending:
                meta = pending.pop(exc.uids[0])
                out.scanned += 1
                reason = f"the source closed the connection while sending it: {exc.server_text}"
                out.unreadable.append(MessageProblem(where, meta.uid, meta.size, reason))
            else:
                singly.update(exc.uids)
    raise ProtocolError(ctx.plan.source.address, f"scan {where}", "the connection kept dropping")


def _inspect(out: MailboxScan, folder: str, uid: int, body: bytes, inbox: bool) -> None:
    size = len(body)
    if not size:
        out.empty.append(MessageProblem(folder, uid, 0, "the message is empty (0 bytes)"))
        return
    end = body.find(b"\r\n\r\n")
    header = body[: end if end >= 0 else min(size, 65536)]
    # One linear pass: a regex like [^\n]{MAX_LINE+1} restarts at every byte of a long line.
    longest = max(map(len, body.split(b"\n")))
    if longest > MAX_LINE:
        out.long_lines.append(MessageProblem(folder, uid, size, f"longest line {longest} characters"))
    if not _MESSAGE_ID.search(header):
        out.no_message_id.append(MessageProblem(folder, uid, size, "no Message-ID header"))
    defects = _mime_defects(body)
    if defects:
        out.mime_defects.append(MessageProblem(folder, uid, size, "; ".join(defects)))
    if inbox:
        for match in _RECIPIENT.finditer(header):
            out.inbox_recipients[match.group(1).decode("utf-8", "replace").lower()] += 1


def _mime_defects(body: bytes) -> list[str]:
    """The stdlib parser's defects (missing boundaries, bad headers...), once per kind."""
    message = email.message_from_bytes(body, policy=email.policy.default)
    found: dict[str, None] = {}
    for part in message.walk():
        for defect in part.defects:
            found.setdefault(type(defect).__name__, None)
    return list(found)

"""Reading every message of a mailbox once, looking for what breaks migrations.

The bodies come through the source adapter's own ``fetch`` (the engine's batched, pipelined read
path), on the session the survey opened: one login per mailbox. Only what the checks need is kept
per message (UID, size, the problem), never bodies.
"""

from __future__ import annotations

import email
import email.policy
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from runners.connectors.base import SourceSession
from runners.errors import FetchConnectionLost, ProtocolError
from runners.model import FetchedMessage, FetchFailure, FolderInfo, MessageMeta

#: Exchange rejects lines longer than this over IMAP ("BAD Command Argument Error 11").
MAX_LINE = 10_000
_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*\S")
_RECIPIENT = re.compile(rb"(?im)^(?:delivered-to|x-original-to|envelope-to):[ \t]*<?([^\s<>;]+)")
#: A top-level type whose body the MIME parser walks into; any other body can't hold a MIME defect.
_NESTED_TYPE = re.compile(rb"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)*(?:multipart|message)/")
#: Fetched messages handed from the reading thread to the inspecting one at a time.
READ_AHEAD = 256


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


class HeldSession:
    """The mailbox's one source session, replaced (a new login) only after the server dropped it."""

    def __init__(self, session: SourceSession, reopen: Callable[[], SourceSession]) -> None:
        self._session: SourceSession | None = session
        self._reopen = reopen

    @property
    def session(self) -> SourceSession:
        if self._session is None:
            self._session = self._reopen()
        return self._session

    def drop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def close(self) -> None:
        self.drop()


def scan_folder(
    held: HeldSession, folder: FolderInfo, metas: Sequence[MessageMeta], out: MailboxScan, server: str
) -> None:
    """Read every message of a folder; a server that hangs up on one message gets it isolated.

    Like the engine: after a drop mid-FETCH the undelivered messages are fetched one by one, and one
    that drops the connection on its own is recorded as unreadable with the server's words.
    """
    where = folder.display
    inbox = folder.path == ("INBOX",)
    pending = {m.uid: m for m in metas}
    singly: set[int] = set()
    for _attempt in range(len(metas) + 2):
        session = held.session
        session.isolate(singly)
        try:
            for item in read_ahead(session.fetch(folder, list(pending.values()))):
                meta = pending.pop(item.meta.uid, item.meta)
                out.scanned += 1
                if isinstance(item, FetchFailure):
                    out.unreadable.append(MessageProblem(where, meta.uid, meta.size, item.reason))
                else:
                    inspect(out, where, meta.uid, item.body, inbox)
            return
        except FetchConnectionLost as exc:
            held.drop()
            if exc.single and exc.uids[0] in pending:
                meta = pending.pop(exc.uids[0])
                out.scanned += 1
                reason = f"the source closed the connection while sending it: {exc.server_text}"
                out.unreadable.append(MessageProblem(where, meta.uid, meta.size, reason))
            else:
                singly.update(exc.uids)
    raise ProtocolError(server, f"scan {where}", "the connection kept dropping")


def read_ahead(
    items: Iterator[FetchedMessage | FetchFailure],
) -> Iterator[FetchedMessage | FetchFailure]:
    """``items`` read by a thread of their own, as the engine's pipeline does: the next batch arrives
    from the server while this thread inspects the last one. A failure is raised here, in order."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()
    end = object()

    def reader() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(end)
        except BaseException as exc:  # handed to the inspecting thread, which raises it
            handoff.put(exc)

    thread = threading.Thread(target=reader, name="scan-fetch", daemon=True)
    thread.start()
    try:
        while True:
            got = handoff.get()
            if got is end:
                return
            if isinstance(got, BaseException):
                raise got
            yield got  # type: ignore[misc]
    finally:
        stop.set()
        # Unblock a reader waiting to hand over, and let it notice the stop. Never a blocking get: after
        # the end marker the queue stays empty while the reader thread is still returning.
        while thread.is_alive():
            try:
                handoff.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def inspect(out: MailboxScan, folder: str, uid: int, body: bytes, inbox: bool) -> None:
    size = len(body)
    if not size:
        out.empty.append(MessageProblem(folder, uid, 0, "the message is empty (0 bytes)"))
        return
    end = body.find(b"\r\n\r\n")
    header = body[: end if end >= 0 else min(size, 65536)]
    if size > MAX_LINE:  # a shorter message can't hold a longer line
        # One linear pass: a regex like [^\n]{MAX_LINE+1} restarts at every byte of a long line.
        longest = max(map(len, body.split(b"\n")))
        if longest > MAX_LINE:
            out.long_lines.append(MessageProblem(folder, uid, size, f"longest line {longest} characters"))
    if not _MESSAGE_ID.search(header):
        out.no_message_id.append(MessageProblem(folder, uid, size, "no Message-ID header"))
    defects = mime_defects(body, end)
    if defects:
        out.mime_defects.append(MessageProblem(folder, uid, size, "; ".join(defects)))
    if inbox:
        for match in _RECIPIENT.finditer(header):
            out.inbox_recipients[match.group(1).decode("utf-8", "replace").lower()] += 1


def mime_defects(body: bytes, header_end: int = -2) -> list[str]:
    """The stdlib parser's defects (missing boundaries, bad headers...), once per kind.

    A single-part body can't hold one (the parser doesn't look into it), so only the header block
    of such a message is parsed: the same defects at a fraction of the cost.
    """
    end = body.find(b"\r\n\r\n") if header_end == -2 else header_end
    if end >= 0 and not _NESTED_TYPE.search(body, 0, end):
        body = body[: end + 4]
    message = email.message_from_bytes(body, policy=email.policy.compat32)
    found: dict[str, None] = {}
    for part in message.walk():
        for defect in part.defects:
            found.setdefault(type(defect).__name__, None)
    return list(found)

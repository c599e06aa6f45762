"""The source pass: every in-scope mailbox read once per check run, on one session (one login).

The survey (folders with message counts, bytes and the largest message, kept in the state store
for the engine's planning and the capacity checks), the mailbox's own quota and, unless
``[checks] scan = false``, the scan of every message all come from that session. Computed once
(``ctx.fact("source-pass", ...)``) for every check that asks ``survey(ctx)`` or ``scan(ctx)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from checks.context import CheckContext
from checks.message_scan import HeldSession, MailboxScan, scan_folder
from checks.source_quota import QuotaResource, read_quota
from runners.connectors.base import LeftOff, NotingSource, SourceSession
from runners.engine.sessions import open_source
from runners.errors import CommandError, MigrationError, ProtocolError
from runners.model import FolderInfo, MessageMeta
from runners.plan.model import MailboxEntry
from runners.state.open_store import open_store
from runners.state.survey import SurveyRow

T = TypeVar("T")
R = TypeVar("R")

#: Mailboxes read at once (each holds one source connection; the server cap still applies).
SURVEY_WORKERS = 8


@dataclass(slots=True)
class FolderSurvey:
    folder: FolderInfo
    messages: int = 0
    bytes: int = 0
    largest: int = 0
    #: The listing itself, for checks that look at individual messages (sizes, flags).
    metas: list[MessageMeta] = field(default_factory=list)
    #: What the listing found that no copy carries (``runners.connectors.base.NotingSource``).
    left_off: list[LeftOff] = field(default_factory=list)
    #: The server's words when the folder could not be opened.
    error: str | None = None


@dataclass(slots=True)
class MailboxSurvey:
    entry: MailboxEntry
    folders: list[FolderSurvey] = field(default_factory=list)
    #: Why the mailbox could not be surveyed at all (login refused, connection failed).
    error: str | None = None
    error_kind: str | None = None
    #: The server's own words for ``error``.
    error_text: str = ""
    #: The mailbox's own quota on the source (GETQUOTAROOT INBOX); None: not asked or not offered.
    quota: list[QuotaResource] | None = None
    #: Why the quota could not be read (the server's words), when it offers QUOTA.
    quota_error: str | None = None

    @property
    def messages(self) -> int:
        return sum(f.messages for f in self.folders)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.folders)

    @property
    def largest(self) -> int:
        return max((f.largest for f in self.folders), default=0)


@dataclass(slots=True)
class Survey:
    mailboxes: list[MailboxSurvey]

    @property
    def largest(self) -> int:
        return max((m.largest for m in self.mailboxes), default=0)

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.mailboxes)

    @property
    def messages(self) -> int:
        return sum(m.messages for m in self.mailboxes)


@dataclass(slots=True)
class SourcePass:
    survey: Survey
    #: Per surveyed mailbox, in the survey's order; None with ``[checks] scan = false``.
    scans: list[MailboxScan] | None


def survey(ctx: CheckContext) -> Survey:
    """The survey of every mailbox in the plan, computed once per run and shared by all checks."""
    return source_pass(ctx).survey


def source_pass(ctx: CheckContext) -> SourcePass:
    """Every mailbox surveyed and, unless ``[checks] scan = false``, scanned: once per run."""
    return ctx.fact("source-pass", lambda: _read_all(ctx))


def _read_all(ctx: CheckContext) -> SourcePass:
    entries = list(ctx.plan.mailboxes)
    scanning = ctx.plan.readiness.scan
    read = map_in_daemons(lambda e: _read_mailbox(ctx, e, scanning), entries, SURVEY_WORKERS)
    result = Survey([box for box, _ in read])
    _store(ctx, result)
    scans = [scan for box, scan in read if scan is not None] if scanning else None
    return SourcePass(result, scans)


def map_in_daemons(func: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[func(item) for item in items]``, ``workers`` at a time, in daemon threads: a server that
    never answers must not keep the process alive after the check waiting for it was abandoned."""
    results: list[R | None] = [None] * len(items)
    failures: list[BaseException] = []
    todo = iter(enumerate(items))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                nxt = next(todo, None)
            if nxt is None or failures:
                return
            try:
                results[nxt[0]] = func(nxt[1])
            except BaseException as exc:
                failures.append(exc)

    threads = [
        threading.Thread(target=work, daemon=True, name="source-pass")
        for _ in range(max(1, min(workers, len(items))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results  # type: ignore[return-value]  # every slot was filled: no failure


def _read_mailbox(
    ctx: CheckContext, entry: MailboxEntry, scanning: bool
) -> tuple[MailboxSurvey, MailboxScan | None]:
    """One session, under the per-server cap: each folder listed then, still open, read; the quota."""
    out = MailboxSurvey(entry)
    scanned = MailboxScan(entry.source) if scanning else None
    held: HeldSession | None = None
    try:
        with ctx.server(f"source:{ctx.plan.source.address}"):
            held = HeldSession(
                open_source(ctx.plan.source, entry), lambda: open_source(ctx.plan.source, entry)
            )
            for folder in held.session.list_folders():
                if folder.selectable:
                    out.folders.append(_survey_folder(held.session, folder))
                    _scan(ctx, held, out.folders[-1], scanned)
            out.quota, out.quota_error = read_quota(held.session)
            return out, scanned
    except ProtocolError as exc:
        out.error, out.error_kind, out.error_text = str(exc), type(exc).__name__, exc.server_text
    except MigrationError as exc:
        out.error, out.error_kind = str(exc), "config"
    finally:
        if held is not None:
            held.close()
    return out, None


def _survey_folder(session: SourceSession, folder: FolderInfo) -> FolderSurvey:
    item = FolderSurvey(folder)
    try:
        _, metas = session.list_messages(folder)
    except CommandError as exc:  # this folder refused; a broken connection fails the mailbox
        item.error = exc.server_text or str(exc)
    else:
        sizes = [m.size for m in metas if m.size > 0]
        item.messages, item.bytes, item.largest, item.metas = (
            len(metas),
            sum(sizes),
            max(sizes, default=0),
            metas,
        )
        if isinstance(session, NotingSource):
            item.left_off = session.listing_notes(folder)
    return item


def _scan(ctx: CheckContext, held: HeldSession, folder: FolderSurvey, out: MailboxScan | None) -> None:
    """Every message of a folder just listed (still selected: no second EXAMINE). A scan that fails
    stops the mailbox's scan and leaves its survey standing."""
    if out is None or out.error is not None or folder.error is not None or not folder.metas:
        return
    try:
        scan_folder(held, folder.folder, folder.metas, out, ctx.plan.source.address)
    except ProtocolError as exc:
        out.error = str(exc)


def _store(ctx: CheckContext, result: Survey) -> None:
    store = open_store(ctx.plan)
    now = time.time()
    store.save_survey(
        [
            SurveyRow(m.entry.source, f.folder.display, f.messages, f.bytes, f.largest, now)
            for m in result.mailboxes
            for f in m.folders
            if f.error is None
        ]
    )
    store.close()

"""The source survey: every in-scope mailbox's folders with message counts, bytes and the largest
message, gathered once per check run (``ctx.fact("survey", ...)``) and kept in the state store
for the engine's planning and the capacity checks."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from checks.context import CheckContext
from runners.connectors.base import SourceSession
from runners.engine.sessions import open_source
from runners.errors import CommandError, MigrationError, ProtocolError
from runners.model import FolderInfo, MessageMeta
from runners.plan.model import MailboxEntry
from runners.state.store import StateStore
from runners.state.survey import SurveyRow

#: Mailboxes surveyed at once (each holds one source connection; the server cap still applies).
SURVEY_WORKERS = 8


@dataclass(slots=True)
class FolderSurvey:
    folder: FolderInfo
    messages: int = 0
    bytes: int = 0
    largest: int = 0
    #: The listing itself, for checks that look at individual messages (sizes, flags).
    metas: list[MessageMeta] = field(default_factory=list)
    #: The server's words when the folder could not be opened.
    error: str | None = None


@dataclass(slots=True)
class MailboxSurvey:
    entry: MailboxEntry
    folders: list[FolderSurvey] = field(default_factory=list)
    #: Why the mailbox could not be surveyed at all (login refused, connection failed).
    error: str | None = None
    error_kind: str | None = None

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


def survey(ctx: CheckContext) -> Survey:
    """The survey of every mailbox in the plan, computed once per run and shared by all checks."""
    return ctx.fact("survey", lambda: _survey_all(ctx))


def _survey_all(ctx: CheckContext) -> Survey:
    entries = list(ctx.plan.mailboxes)
    with ThreadPoolExecutor(max_workers=max(1, min(SURVEY_WORKERS, len(entries)))) as pool:
        result = Survey(list(pool.map(lambda e: _survey_mailbox(ctx, e), entries)))
    _store(ctx, result)
    return result


def _survey_mailbox(ctx: CheckContext, entry: MailboxEntry) -> MailboxSurvey:
    out = MailboxSurvey(entry)
    session: SourceSession | None = None
    try:
        with ctx.server(f"source:{ctx.plan.source.address}"):
            session = open_source(ctx.plan.source, entry)
            for folder in session.list_folders():
                if not folder.selectable:
                    continue
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
                out.folders.append(item)
    except ProtocolError as exc:
        out.error = str(exc)
        out.error_kind = type(exc).__name__
    except MigrationError as exc:
        out.error, out.error_kind = str(exc), "config"
    finally:
        if session is not None:
            session.close()
    return out


def _store(ctx: CheckContext, result: Survey) -> None:
    store = StateStore(ctx.plan.state_db)
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

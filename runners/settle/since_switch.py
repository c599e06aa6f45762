"""The target read as a source, but only what it received after the switch: the rollback's source adapter.

It is the ordinary IMAP source (runners/connectors/imap_source.py) with one filter: a folder lists only
the messages whose UID is at or above the folder's UIDNEXT recorded at the switch
(``switch_marks.py``), less those the forward engine appended itself (late mail it caught from the
legacy after the switch: the legacy has them already). A folder whose UIDVALIDITY changed since, or that didn't exist then, lists
everything: its UIDs can't be compared with the mark, and copying back too much loses nothing.

Registered as its own source type, so that the engine opens it through the one adapter registry like
any other; the endpoint that names it carries the marks file's path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from runners.adapters import AdapterSpec, register_source
from runners.connectors.base import SourceSession
from runners.connectors.imap_source import open_session as open_imap_source
from runners.model import FetchedMessage, FetchFailure, FolderInfo, FolderState, MessageMeta
from runners.plan.model import Endpoint, EndpointType, MailboxEntry
from runners.settle.switch_marks import FolderMark, SwitchMarks, read_engine_copies

#: The source type of a rollback plan's source (never written in a plan file).
SINCE_SWITCH = cast(EndpointType, "imap-since-switch")


@dataclass(frozen=True, slots=True)
class SinceSwitchEndpoint(Endpoint):
    """The target's IMAP endpoint, typed ``SINCE_SWITCH``, with the switch marks' file."""

    marks_file: str = ""
    #: Target UIDs the forward engine appended itself (late mail among them): never copied back.
    copies_file: str = ""


def since_switch_endpoint(target: Endpoint, marks_file: str, copies_file: str) -> SinceSwitchEndpoint:
    fields = {name: getattr(target, name) for name in Endpoint.__dataclass_fields__}
    fields["type"] = SINCE_SWITCH
    return SinceSwitchEndpoint(**fields, marks_file=marks_file, copies_file=copies_file)


def open_session(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    """The rollback source for one mailbox (``runners.adapters`` names this opener)."""
    assert isinstance(endpoint, SinceSwitchEndpoint)
    with open(endpoint.marks_file, encoding="utf-8") as handle:
        marks = SwitchMarks.from_json(handle.read())
    copies = read_engine_copies(endpoint.copies_file).get(entry.source, {})
    imap = Endpoint(type="imap", **_plain_fields(endpoint))  # type: ignore[arg-type]
    return SinceSwitch(open_imap_source(imap, entry), marks.mailboxes.get(entry.source, {}), copies)


def _plain_fields(endpoint: Endpoint) -> dict[str, object]:
    return {name: getattr(endpoint, name) for name in Endpoint.__dataclass_fields__ if name != "type"}


class SinceSwitch:
    """A source session that lists only the messages the target received after the switch."""

    def __init__(
        self,
        inner: SourceSession,
        marks: Mapping[str, FolderMark],
        engine_copies: Mapping[str, frozenset[int]],
    ) -> None:
        self.inner, self.marks, self.engine_copies = inner, marks, engine_copies
        self.server = inner.server

    def list_folders(self) -> list[FolderInfo]:
        return self.inner.list_folders()

    def folder_states(self, folders: Sequence[FolderInfo]) -> dict[str, FolderState | Exception]:
        return self.inner.folder_states(folders)

    def list_messages(self, folder: FolderInfo) -> tuple[FolderState, list[MessageMeta]]:
        state, metas = self.inner.list_messages(folder)
        ours = self.engine_copies.get(folder.raw_name, frozenset())
        metas = [m for m in metas if m.uid not in ours]
        mark = self.marks.get(folder.raw_name)
        if mark is None or mark.uidvalidity != state.uidvalidity:
            return state, metas
        return state, [m for m in metas if m.uid >= mark.uidnext]

    def fetch(
        self, folder: FolderInfo, metas: Sequence[MessageMeta]
    ) -> Iterator[FetchedMessage | FetchFailure]:
        return self.inner.fetch(folder, metas)

    def isolate(self, uids: Collection[int]) -> None:
        self.inner.isolate(uids)

    def header_block(
        self, *, folder: str, uid: int, key: str, uidvalidity: int, fields: Sequence[str]
    ) -> bytes | str:
        return self.inner.header_block(
            folder=folder, uid=uid, key=key, uidvalidity=uidvalidity, fields=fields
        )

    def close(self) -> None:
        self.inner.close()


register_source(AdapterSpec(SINCE_SWITCH, "runners.settle.since_switch:open_session"))

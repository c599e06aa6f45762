"""IMAP extractor: lists folders and streams bodies from a mailbox opened read-only."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

from runners.connectors.base import SourceSession
from runners.connectors.credentials import user_password
from runners.connectors.imap_common import list_folders, namespace, select_state, statuses
from runners.connectors.imap_login import open_imap
from runners.connectors.ranged import LIST_CHUNK, UidRange, cut
from runners.errors import ConnectionLost, FetchConnectionLost
from runners.folders import source_path
from runners.imap.parse import compress_uids, fetch_meta, fetch_uid
from runners.imap.wire import ImapConnection
from runners.model import FetchedMessage, FetchFailure, FolderInfo, FolderState, MessageMeta
from runners.plan.model import Endpoint, MailboxEntry
from runners.special_use import special_uses_in

#: Bytes of bodies asked for in one UID FETCH: large enough to amortise the round trip, small
#: enough that a broken batch is cheap to retry message by message.
FETCH_BATCH_BYTES = 4 * 1024 * 1024
FETCH_BATCH_MESSAGES = 500
#: A body may come this much larger than its listed RFC822.SIZE before we hang up (a larger one fails
#: the size check anyway); no body, listed or not, may exceed ``MAX_BODY_BYTES`` (no target takes one).
BODY_SLACK_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024 * 1024


def open_session(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    """The source session for one mailbox of a plan (``runners.adapters`` names this opener)."""
    user = entry.source
    return ImapSource(open_imap(endpoint, user, user_password(endpoint, user, entry.source_password)))


class ImapSource:
    def __init__(self, conn: ImapConnection) -> None:
        self.conn = conn
        self.server = conn.server
        self.prefix, self.separator = namespace(conn)
        self._selected: str | None = None
        self._alone: frozenset[int] = frozenset()

    def isolate(self, uids: Collection[int]) -> None:
        self._alone = frozenset(uids)

    def list_folders(self) -> list[FolderInfo]:
        out: list[FolderInfo] = []
        for wire, sep, attrs in list_folders(self.conn):
            lowered = {a.lower() for a in attrs}
            out.append(
                FolderInfo(
                    raw_name=wire,
                    path=source_path(wire, sep, self.prefix),
                    separator=sep,
                    special_use=next(iter(special_uses_in(attrs)), None),
                    selectable=not ({"\\noselect", "\\nonexistent"} & lowered),
                )
            )
        return out

    def folder_states(self, folders: Sequence[FolderInfo]) -> dict[str, FolderState | Exception]:
        names = [f.raw_name for f in folders]
        return dict(zip(names, statuses(self.conn, names), strict=True))

    def _examine(self, folder: FolderInfo) -> FolderState:
        modifier = b" (CONDSTORE)" if self.conn.has("CONDSTORE") else b""
        self._selected = None
        reply = self.conn.check(
            b"EXAMINE " + self.conn.astring(folder.raw_name) + modifier, f"EXAMINE {folder.raw_name}"
        )
        self._selected = folder.raw_name
        return select_state(reply)

    def open_folder(self, folder: FolderInfo) -> FolderState:
        return self._examine(folder)

    def list_messages(self, folder: FolderInfo) -> tuple[FolderState, list[MessageMeta]]:
        state = self._examine(folder)
        if state.messages == 0:
            return state, []
        return state, self._metas(folder, b"1:*", UidRange(1, None))

    def uid_ranges(self, folder: FolderInfo, state: FolderState, size: int = LIST_CHUNK) -> list[UidRange]:
        """One ``FETCH n,2n,3n,... (UID)`` finds the UIDs at every ``size``-th message: the cuts."""
        if state.messages == 0:
            return []
        if state.messages <= size:
            return [UidRange(1, None)]
        seqs = b",".join(b"%d" % n for n in range(size, state.messages, size))
        reply = self.conn.check(b"FETCH " + seqs + b" (UID)", f"FETCH {folder.raw_name} range cuts")
        found = (fetch_uid(parts) for parts in reply.untagged if b" FETCH " in parts[0])
        return cut(sorted({uid for uid in found if uid is not None}))

    def list_range(self, folder: FolderInfo, uids: UidRange) -> list[MessageMeta]:
        if self._selected != folder.raw_name:
            self._examine(folder)
        high = b"*" if uids.high is None else b"%d" % uids.high
        return self._metas(folder, b"%d:" % uids.low + high, uids)

    def _metas(self, folder: FolderInfo, uid_set: bytes, uids: UidRange) -> list[MessageMeta]:
        items = b"UID RFC822.SIZE FLAGS INTERNALDATE"
        reply = self.conn.check(
            b"UID FETCH " + uid_set + b" (" + items + b")", f"UID FETCH {folder.raw_name} metadata"
        )
        metas: list[MessageMeta] = []
        for parts in reply.untagged:
            if parts[0].find(b" FETCH ") < 0:  # find, not ``in``: see runners.imap.parse._uid_in
                continue
            uid, size, flags, idate, _ = fetch_meta(parts[0] if len(parts) == 1 else b"".join(parts[::2]))
            # "n:*" also answers with the highest message when n is above it (RFC 3501): filter.
            if uid is None or not uids.holds(uid):
                continue
            metas.append(MessageMeta(str(uid), uid, size if size is not None else -1, flags or (), idate))
        return metas

    def fetch(
        self, folder: FolderInfo, metas: Sequence[MessageMeta]
    ) -> Iterator[FetchedMessage | FetchFailure]:
        if self._selected != folder.raw_name:
            self._examine(folder)
        batch: list[MessageMeta] = []
        batch_bytes = 0
        alone = [m for m in metas if m.uid in self._alone]
        for meta in metas:
            if meta.uid in self._alone:
                continue
            batch.append(meta)
            batch_bytes += max(meta.size, 0)
            if batch_bytes >= FETCH_BATCH_BYTES or len(batch) >= FETCH_BATCH_MESSAGES:
                yield from self._fetch_batch(folder, batch)
                batch, batch_bytes = [], 0
        if batch:
            yield from self._fetch_batch(folder, batch)
        for meta in alone:
            yield self._fetch_one(folder, meta)

    def _fetch_batch(
        self, folder: FolderInfo, batch: list[MessageMeta]
    ) -> Iterator[FetchedMessage | FetchFailure]:
        wanted = {m.uid: m for m in batch}
        try:
            tag = self.conn.send_command(b"UID FETCH " + compress_uids(wanted) + b" (UID BODY.PEEK[])")
            with self.conn.expecting_literals(*body_limit(batch)):
                for parts in self.conn.responses(tag):
                    if parts[0].startswith(tag):
                        break
                    if parts[0].find(b" FETCH ") < 0:  # find, not ``in``: see runners.imap.parse._uid_in
                        continue
                    if len(parts) < 2:
                        quoted = _quoted_body(parts[0])
                        if quoted is None:
                            continue  # a flags update or the like: not a body
                        parts = quoted
                    uid = fetch_uid(parts)
                    meta = wanted.pop(uid, None) if uid is not None else None
                    if meta is None:
                        continue
                    yield _checked(meta, parts[1])
        except ConnectionLost as exc:
            raise FetchConnectionLost(exc, folder.raw_name, sorted(wanted), single=len(batch) == 1) from None
        # Some messages were not delivered in the batch: ask for each alone to get its own answer.
        for meta in list(wanted.values()):
            yield self._fetch_one(folder, meta)

    def _fetch_one(self, folder: FolderInfo, meta: MessageMeta) -> FetchedMessage | FetchFailure:
        try:
            with self.conn.expecting_literals(*body_limit([meta])):
                reply = self.conn.command(
                    b"UID FETCH %d (UID BODY.PEEK[])" % meta.uid, f"UID FETCH {folder.raw_name} {meta.uid}"
                )
        except ConnectionLost as exc:
            raise FetchConnectionLost(exc, folder.raw_name, [meta.uid], single=True) from None
        for parts in reply.untagged:
            if b" FETCH " not in parts[0]:
                continue
            body_parts = parts if len(parts) >= 2 else _quoted_body(parts[0])
            if body_parts is not None and fetch_uid(body_parts) == meta.uid:
                return _checked(meta, body_parts[1])
        if reply.status != "OK":
            return FetchFailure(meta, f"source refused FETCH: {reply.status} {reply.text}")
        return FetchFailure(meta, "source returned no body (message expunged during the run?)")

    def close(self) -> None:
        self.conn.close()

    def header_block(
        self, *, folder: str, uid: int, key: str, uidvalidity: int, fields: Sequence[str]
    ) -> bytes | str:
        """EXAMINE and ``UID FETCH <uid> BODY.PEEK[HEADER.FIELDS (...)]`` (never sets \\Seen); a folder
        whose UIDVALIDITY changed since the ledger row was written is reported, not guessed at."""
        conn = self.conn
        state = select_state(conn.check(b"EXAMINE " + conn.astring(folder), f"EXAMINE {folder}"))
        self._selected = None  # the folder open now is not the one list_messages selected
        if uidvalidity and state.uidvalidity and state.uidvalidity != uidvalidity:
            return (
                f"{folder} has UIDVALIDITY {state.uidvalidity} on the source now, {uidvalidity} when "
                f"this was recorded: UID {uid} no longer names the same message"
            )
        items = b"BODY.PEEK[HEADER.FIELDS (" + " ".join(fields).upper().encode("ascii") + b")]"
        operation = f"UID FETCH {folder} {uid} headers"
        reply = conn.command(b"UID FETCH %d (UID " % uid + items + b")", operation)
        for parts in reply.untagged:
            if b" FETCH " not in parts[0] or fetch_uid(parts) not in (None, uid):
                continue  # not a FETCH, or an unsolicited update about another message
            if len(parts) >= 2:
                return parts[1]
            if b'] ""' in parts[0] or b"] NIL" in parts[0]:
                return b""  # none of the fields: the server sends an empty string
        if reply.status != "OK":
            return f"{conn.server} {operation}: {reply.status} {reply.text}"
        return f"UID {uid} is no longer in {folder} on the source (expunged since the run?)"


def body_limit(metas: Sequence[MessageMeta]) -> tuple[int, str]:
    """The largest body literal a FETCH of ``metas`` may announce, and the limit's name for the error."""
    largest = max(m.size for m in metas)
    if largest + BODY_SLACK_BYTES > MAX_BODY_BYTES or any(m.size < 0 for m in metas):
        return MAX_BODY_BYTES, "the limit for any message body"
    return (
        largest + BODY_SLACK_BYTES,
        f"the listed size of {largest} bytes plus {BODY_SLACK_BYTES} bytes of slack",
    )


def _quoted_body(line: bytes) -> list[bytes] | None:
    """A body sent as a quoted string instead of a literal (``BODY[] ""`` for an empty message)."""
    start = line.find(b'BODY[] "')
    if start < 0:
        return None
    end = line.find(b'"', start + 8)
    if end < 0:
        return None
    return [line[:start], line[start + 8 : end], line[end + 1 :]]


def _checked(meta: MessageMeta, body: bytes) -> FetchedMessage | FetchFailure:
    if meta.size >= 0 and len(body) != meta.size:
        return FetchFailure(
            meta, f"size mismatch: source announced RFC822.SIZE {meta.size} but delivered {len(body)} bytes"
        )
    return FetchedMessage(meta, body)

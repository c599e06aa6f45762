"""IMAP importer: creates folders and appends with MULTIAPPEND, LITERAL+ and UIDPLUS when offered."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

from runners.adapters import IMAP_TARGET
from runners.connectors.base import TargetSession
from runners.connectors.credentials import user_password
from runners.connectors.imap_common import list_folders, namespace, parse_status, status_items, statuses
from runners.connectors.imap_login import open_imap
from runners.connectors.imap_recovery import FloorRecovery
from runners.errors import CommandError
from runners.folders import parents_of, source_path
from runners.imap.codes import command_error
from runners.imap.dates import canonical_date
from runners.imap.parse import compress_uids, expand_uid_set, fetch_meta
from runners.imap.wire import ImapConnection, Reply
from runners.model import AppendItem, AppendOutcome, ListedItem, TargetLayout, settable_flags
from runners.plan.model import Endpoint, MailboxEntry
from runners.special_use import SPECIAL_USES, special_uses_in

if TYPE_CHECKING:
    from runners.kept import KeptItem

#: Response codes after which appending more to this mailbox is pointless.
MAILBOX_FATAL_CODES = {"OVERQUOTA", "NOPERM"}
#: A body larger than this is sent with a synchronizing literal when sent alone, so that a server
#: that refuses it says so before we push the bytes.
SYNC_LITERAL_ABOVE = 256 * 1024


def open_session(endpoint: Endpoint, entry: MailboxEntry) -> TargetSession:
    """The target session for one mailbox of a plan (``runners.adapters`` names this opener)."""
    user = entry.target
    return ImapTarget(open_imap(endpoint, user, user_password(endpoint, user, entry.target_password)))


class ImapTarget:
    """``runners.connectors.base.TargetSession`` over IMAP: folders are wire names, items are UIDs
    as decimal text (the only place that knows they are numbers)."""

    capabilities = IMAP_TARGET

    def __init__(self, conn: ImapConnection) -> None:
        self.conn = conn
        self.server = conn.server
        self.prefix, self.separator = namespace(conn)
        self.recovery = FloorRecovery(self)
        self._selected: str | None = None
        #: The last LIST answer; special_folders() and existing_folders() share it until a CREATE.
        self._listed: list[tuple[str, str | None, tuple[str, ...]]] | None = None

    # -- folders -------------------------------------------------------------------------------

    def _listing(self) -> list[tuple[str, str | None, tuple[str, ...]]]:
        if self._listed is None:
            self._listed = list_folders(self.conn)
        return self._listed

    def layout(self) -> TargetLayout:
        return TargetLayout(self.separator, self.prefix, self.special_folders())

    def special_folders(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for wire, sep, attrs in self._listing():
            for use in special_uses_in(attrs):
                if use in SPECIAL_USES and use not in found:
                    found[use] = "/".join(source_path(wire, sep, self.prefix))
        return found

    def existing_folders(self) -> set[str]:
        return {wire for wire, _, attrs in self._listing() if "\\noselect" not in {a.lower() for a in attrs}}

    def create_folder(self, folder: str) -> list[str]:
        """Create a folder as the source has it, and its parents only if the server insists on them
        (creating them up front would turn the source's \\Noselect placeholders into real, empty
        folders). Returns the folders created, outermost first."""
        if folder.upper() == "INBOX":  # every IMAP mailbox has one (RFC 3501 5.1)
            return []
        try:
            self._create(folder)
            return [folder]
        except CommandError:
            existing = self.existing_folders()
            created = [p for p in parents_of(folder, self.separator, self.prefix) if p not in existing]
            for parent in created:
                self._create(parent)
            self._create(folder)
            return [*created, folder]

    def _create(self, wire_name: str) -> None:
        name = self.conn.astring(wire_name)
        reply = self.conn.command(b"CREATE " + name, f"CREATE {wire_name}")
        self._listed = None  # the folder set may have changed: the next LIST is a fresh one
        if (
            reply.status != "OK"
            and reply.code != "ALREADYEXISTS"
            and wire_name not in self.existing_folders()
        ):
            raise command_error(self.server, f"CREATE {wire_name}", reply.text, reply.code, reply.status)
        # Users expect to see migrated folders in their client, which only shows subscribed ones.
        self.conn.command(b"SUBSCRIBE " + name, f"SUBSCRIBE {wire_name}")

    def uidnext(self, wire_name: str) -> int:
        reply = self.conn.check(
            b"STATUS " + self.conn.astring(wire_name) + b" (" + status_items(self.conn) + b")",
            f"STATUS {wire_name}",
        )
        return parse_status(reply).uidnext

    def message_counts(self, folders: Sequence[str]) -> dict[str, int | Exception]:
        """One pipelined STATUS for every folder: a single round trip however many there are."""
        return {
            name: state if isinstance(state, Exception) else state.messages
            for name, state in zip(folders, statuses(self.conn, folders), strict=True)
        }

    # -- append --------------------------------------------------------------------------------

    def append(
        self, wire_name: str, items: Sequence[AppendItem], keep_sending: Callable[[], None] = lambda: None
    ) -> list[AppendOutcome]:
        if not items:
            return []
        with self.conn.sending_while(keep_sending):
            return self._append(wire_name, items, keep_sending)

    def _append(
        self, wire_name: str, items: Sequence[AppendItem], keep_sending: Callable[[], None]
    ) -> list[AppendOutcome]:
        sent = False  # an APPEND of this call went out: the next one asks ``keep_sending`` first
        if len(items) > 1 and self.conn.has("MULTIAPPEND"):
            reply = self._send_append(wire_name, items, sync=False)
            sent = True
            if reply.status == "OK":
                return _outcomes(reply, len(items))
            if reply.code in MAILBOX_FATAL_CODES:
                return [_failure(reply, fatal=True) for _ in items]
        # One by one: either no MULTIAPPEND, or the batch was refused and we must learn which.
        outcomes: list[AppendOutcome] = []
        for index, item in enumerate(items):
            if sent:
                keep_sending()
            reply = self._send_append(wire_name, [item], sync=len(item.body) > SYNC_LITERAL_ABOVE)
            sent = True
            if reply.status == "OK":
                outcomes.extend(_outcomes(reply, 1))
            elif reply.code in MAILBOX_FATAL_CODES:
                outcomes.extend(_failure(reply, fatal=True) for _ in items[index:])
                break
            else:
                outcomes.append(_failure(reply, fatal=False))
        return outcomes

    def _send_append(self, wire_name: str, items: Sequence[AppendItem], *, sync: bool) -> Reply:
        pieces: list[bytes | tuple[bytes]] = [b"APPEND " + self.conn.astring(wire_name)]
        for item in items:
            head = b" (" + _flag_text(item.flags) + b")"
            date = canonical_date(item.internaldate)
            if date:
                head += b' "' + date.encode("ascii") + b'"'
            pieces.append(head + b" ")
            pieces.append((item.body,))
        operation = f"APPEND {wire_name}" + (f" ({len(items)} messages)" if len(items) > 1 else "")
        if sync and self.conn.has("LITERAL+"):
            self.conn.capabilities.discard("LITERAL+")
            try:
                return self.conn.send_with_literals(pieces, operation)
            finally:
                self.conn.capabilities.add("LITERAL+")
        return self.conn.send_with_literals(pieces, operation)

    # -- reconciliation and flag sync -----------------------------------------------------------

    def _select(self, wire_name: str, readonly: bool) -> None:
        verb = b"EXAMINE " if readonly else b"SELECT "
        self._selected = None
        self.conn.check(verb + self.conn.astring(wire_name), f"{verb.decode().strip()} {wire_name}")
        self._selected = wire_name

    def list_items(self, wire_name: str) -> dict[str, ListedItem]:
        """UID -> size, INTERNALDATE as written and flags of every message of the folder, in one FETCH."""
        self._select(wire_name, readonly=True)
        reply = self.conn.check(
            b"UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE)",
            f"UID FETCH {wire_name} sizes, flags and dates",
        )
        items: dict[str, ListedItem] = {}
        for parts in reply.untagged:
            if b" FETCH " in parts[0]:
                uid, size, flags, internaldate, _ = fetch_meta(parts[0])
                if uid is not None:
                    items[str(uid)] = ListedItem(size or 0, internaldate, flags)
        return items

    def digests(self, wire_name: str) -> Iterator[tuple[str, int, bytes]]:
        return self.digests_from(wire_name, 1)

    def digests_from(self, wire_name: str, min_uid: int) -> Iterator[tuple[str, int, bytes]]:
        """``(uid, size, sha256)`` of every message with UID >= ``min_uid`` (recovery, verify)."""
        self._select(wire_name, readonly=True)
        tag = self.conn.send_command(b"UID FETCH %d:* (UID RFC822.SIZE BODY.PEEK[])" % max(min_uid, 1))
        for parts in self.conn.responses(tag):
            if parts[0].startswith(tag) or len(parts) < 2 or b" FETCH " not in parts[0]:
                continue
            uid, _size, _, _, _ = fetch_meta(b"".join(parts[::2]))
            # "n:*" also matches the highest message when n is above it (RFC 3501): filter.
            if uid is not None and uid >= min_uid:
                yield str(uid), len(parts[1]), hashlib.sha256(parts[1]).digest()

    def kept_items(self, wire_name: str, *, deep: bool) -> dict[str, KeptItem]:
        """What the folder's messages keep, in the Exchange targets' terms (no key: IMAP stores none).
        Verification of an IMAP target compares bytes instead; this reads a whole folder."""
        from runners.kept import expected_item  # email's parser, loaded only when asked (not by a run)

        self._select(wire_name, readonly=True)
        tag = self.conn.send_command(b"UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")
        kept: dict[str, KeptItem] = {}
        for parts in self.conn.responses(tag):
            if parts[0].startswith(tag) or len(parts) < 2 or b" FETCH " not in parts[0]:
                continue
            uid, _, flags, internaldate, _ = fetch_meta(b"".join(parts[::2]))
            if uid is not None:
                item = expected_item(parts[1], flags or (), internaldate, "", deep=deep)
                kept[str(uid)] = replace(item, size=len(parts[1]))
        return kept

    def set_flags(self, wire_name: str, changes: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        if not changes:
            return
        self._select(wire_name, readonly=False)
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for uid, flags in changes:
            groups[tuple(sorted(flags))].append(int(uid))
        commands = [
            (
                b"UID STORE " + compress_uids(uids) + b" FLAGS.SILENT (" + _flag_text(flags) + b")",
                f"STORE {wire_name}",
            )
            for flags, uids in groups.items()
        ]
        for (_, operation), reply in zip(commands, self.conn.pipeline(commands), strict=True):
            if reply.status != "OK":
                raise command_error(self.server, operation, reply.text, reply.code, reply.status)

    def close(self) -> None:
        self.conn.close()


@lru_cache(maxsize=4096)
def _flag_text(flags: tuple[str, ...]) -> bytes:
    """The flag list of an APPEND or STORE: what can be set (``settable_flags``); the rest is dropped."""
    return " ".join(settable_flags(flags)).encode("ascii")


def _outcomes(reply: Reply, count: int) -> list[AppendOutcome]:
    if reply.code == "APPENDUID":
        pieces = reply.code_args.split()
        if len(pieces) == 2:
            uids = expand_uid_set(pieces[1])
            if len(uids) == count:
                return [AppendOutcome(item_id=str(u)) for u in uids]
    return [AppendOutcome() for _ in range(count)]


def _failure(reply: Reply, *, fatal: bool) -> AppendOutcome:
    return AppendOutcome(error=f"{reply.status} {reply.text}", code=reply.code, fatal_for_mailbox=fatal)

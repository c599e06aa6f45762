"""IMAP4rev1 for the lab: Twisted's ``IMAP4Server`` (twisted.mail.imap4) over a ``MailStore``.

Twisted does the protocol: command parsing with literals, the session states, LIST/LSUB, CREATE,
DELETE, RENAME, SUBSCRIBE, FETCH item rendering, STORE, COPY, SEARCH, APPEND with flags and date,
EXPUNGE, CLOSE, IDLE, NAMESPACE, AUTHENTICATE through twisted.cred. This module adds the storage
(``LabAccount``, ``LabMailbox``, ``LabMessage``) and changes only what a migration engine must
see as a real server shows it:

* SELECT/EXAMINE report UIDNEXT and PERMANENTFLAGS (RFC 3501 §6.3.1 requires both; Twisted sends
  neither), and a folder that won't open answers ``NO`` with its own words (Twisted can only say
  "No such mailbox").
* STATUS quotes the folder name (Twisted writes it bare, so ``Sent Items`` breaks the response)
  and refuses a broken folder like SELECT does.
* FETCH of a corrupt message's body: the other messages are sent, then a tagged ``NO`` with the
  message's words, as Dovecot does for a message it can't read (Twisted has no per-message failure).
* APPEND larger than the platform's limit is refused before the literal is sent, with
  ``NO [TOOBIG]`` (RFC 4469), and the limit is advertised as ``APPENDLIMIT=n`` (RFC 7889).
* LIST shows ``\\HasChildren``/``\\HasNoChildren`` and special-use attributes (RFC 6154 allows
  them in a plain LIST), so clients and the engine find "Sent Items" without a name table.

Capabilities: IMAP4rev1, AUTH=PLAIN (SASL PLAIN with an authorization identity for the master
user), NAMESPACE, IDLE, APPENDLIMIT on a limited platform. No UIDPLUS, MULTIAPPEND, LITERAL+,
CONDSTORE or SPECIAL-USE: the engine must do without them, and the demo shows that it does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes
from email.utils import format_datetime, parsedate_to_datetime
from io import BytesIO
from typing import IO, Any, cast

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, protocol
from twisted.mail import imap4
from twisted.mail.imap4 import (
    IAccount,
    IMailbox,
    IMessage,
    IMessageFile,
    INamespacePresenter,
    MailboxException,
    MessageSet,
)
from zope.interface import implementer

from lab.auth import MasterPlainCredentials, StoreChecker
from lab.mailstore import INBOX, Account, Folder, MailStore, StoredMessage

MESSAGE_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: FETCH items that read the message body: the ones a corrupt message can't deliver.
_BODY_ITEMS = {"body", "rfc822", "rfc822text", "rfc822header", "bodystructure", "envelope"}


# --- messages, mailboxes, accounts ------------------------------------------------------------


@implementer(IMessage, IMessageFile)
class LabMessage:
    def __init__(self, stored: StoredMessage) -> None:
        self.stored = stored

    def getUID(self) -> int:
        return self.stored.uid

    def getFlags(self) -> list[str]:
        return sorted(self.stored.flags)

    def getInternalDate(self) -> str:
        return format_datetime(self.stored.internaldate)

    def getHeaders(self, negate: bool, *names: str | bytes) -> dict[str, str]:
        wanted = {(n.decode() if isinstance(n, bytes) else n).lower() for n in names}
        parsed = message_from_bytes(self.stored.body)
        return {
            key.lower(): str(value)
            for key, value in parsed.items()
            if not names or ((key.lower() in wanted) != negate)
        }

    def getBodyFile(self) -> IO[bytes]:
        body = self.stored.body
        end = body.find(b"\r\n\r\n")
        return BytesIO(body[end + 4 :] if end >= 0 else b"")

    def getSize(self) -> int:
        return len(self.stored.body)

    def isMultipart(self) -> bool:
        return False  # BODYSTRUCTURE describes the message as one part: enough for a lab

    def getSubPart(self, part: int) -> LabMessage:
        raise TypeError("not a multipart message")

    def open(self) -> IO[bytes]:
        return BytesIO(self.stored.body)


@implementer(IMailbox)
class LabMailbox:
    """One folder as Twisted sees it. Made per command: the Folder holds the state."""

    def __init__(self, folder: Folder, separator: str, has_children: bool, limit: int | None) -> None:
        self.folder = folder
        self.separator = separator
        self.has_children = has_children
        self.limit = limit

    # IMailboxInfo
    def getFlags(self) -> list[str]:
        return list(MESSAGE_FLAGS)

    def getHierarchicalDelimiter(self) -> str:
        return self.separator

    def list_attributes(self) -> list[str]:
        hierarchy = "\\HasChildren" if self.has_children else "\\HasNoChildren"
        return [hierarchy, *self.folder.attributes]

    # IMailbox
    def getUIDValidity(self) -> int:
        return self.folder.uidvalidity

    def getUIDNext(self) -> int:
        return self.folder.uidnext

    def getUID(self, message: int) -> int:
        return self.folder.messages[message - 1].uid

    def getMessageCount(self) -> int:
        return len(self.folder.messages)

    def getRecentCount(self) -> int:
        return 0

    def getUnseenCount(self) -> int:
        return sum(1 for m in self.folder.messages if "\\Seen" not in m.flags)

    def isWriteable(self) -> bool:
        return True

    def destroy(self) -> None:
        self.folder.messages.clear()

    def requestStatus(self, names: list[str]) -> dict[str, int]:
        values = {
            "MESSAGES": self.getMessageCount,
            "RECENT": self.getRecentCount,
            "UIDNEXT": self.getUIDNext,
            "UIDVALIDITY": self.getUIDValidity,
            "UNSEEN": self.getUnseenCount,
        }
        out: dict[str, int] = {}
        for name in names:
            if name.upper() == "APPENDLIMIT" and self.limit:
                out["APPENDLIMIT"] = self.limit
            elif name.upper() in values:
                out[name.upper()] = values[name.upper()]()
        return out

    def addListener(self, listener: object) -> None:
        pass  # sessions aren't told about each other's changes (IDLE sees nothing new): not needed here

    def removeListener(self, listener: object) -> None:
        pass

    def addMessage(
        self, message: IO[bytes], flags: list[str], date: bytes | None = None
    ) -> defer.Deferred[int]:
        body = message.read()
        stored = self.folder.append(body, set(flags), _parse_date(date))
        return defer.succeed(stored.uid)

    def expunge(self) -> list[int]:
        return self.folder.expunge()

    def fetch(self, messages: MessageSet, uid: bool) -> list[tuple[int, LabMessage]]:
        stored = self.folder.messages
        if not stored:
            return []
        messages.last = stored[-1].uid if uid else len(stored)
        return [
            (seq, LabMessage(m)) for seq, m in enumerate(stored, 1) if (m.uid if uid else seq) in messages
        ]

    def store(self, messages: MessageSet, flags: list[str], mode: int, uid: bool) -> dict[int, list[str]]:
        changed: dict[int, list[str]] = {}
        for seq, message in self.fetch(messages, uid):
            current = message.stored.flags
            if mode == 0:
                current.clear()
            if mode >= 0:
                current.update(flags)
            else:
                current.difference_update(flags)
            changed[seq] = sorted(current)
        return changed


@implementer(IAccount, INamespacePresenter)
class LabAccount:
    """A logged-in user's folders, in the platform's namespace (prefix and separator)."""

    def __init__(self, store: MailStore, account: Account) -> None:
        self.store = store
        self.account = account

    def mailbox(self, folder: Folder) -> LabMailbox:
        below = folder.name + self.store.separator
        children = any(name.startswith(below) for name in self.account.folders)
        return LabMailbox(folder, self.store.separator, children, self.store.max_message_bytes)

    def folder(self, name: str) -> Folder | None:
        return self.account.folder(name)

    # IAccount
    def addMailbox(self, name: str, mbox: object = None) -> bool:
        return self.create(name)

    def create(self, pathspec: str) -> bool:
        name = pathspec.rstrip(self.store.separator)
        if self.account.folder(name) is not None:
            raise MailboxException("[ALREADYEXISTS] Mailbox already exists")
        if self.store.prefix and not (name.upper() == INBOX or name.startswith(self.store.prefix)):
            raise MailboxException(f"[CANNOT] Mailbox names must start with {self.store.prefix}")
        for parent in self.store.parents(name):
            self.store.create(self.account, parent)
        self.store.create(self.account, name)
        return True

    def select(self, name: str, rw: bool = True) -> LabMailbox | None:
        folder = self.account.folder(name)
        return None if folder is None else self.mailbox(folder)

    def delete(self, name: str) -> None:
        folder = self.account.folder(name)
        if folder is None:
            raise MailboxException("[NONEXISTENT] Mailbox doesn't exist")
        del self.account.folders[folder.name]

    def rename(self, oldname: str, newname: str) -> None:
        folder = self.account.folder(oldname)
        if folder is None:
            raise MailboxException("[NONEXISTENT] Mailbox doesn't exist")
        if self.account.folder(newname) is not None:
            raise MailboxException("[ALREADYEXISTS] Mailbox already exists")
        del self.account.folders[folder.name]
        folder.name = newname
        self.account.folders[newname] = folder

    def isSubscribed(self, name: str) -> bool:
        folder = self.account.folder(name)
        return folder is not None and folder.subscribed

    def subscribe(self, name: str) -> None:
        folder = self.account.folder(name)
        if folder is None:
            raise MailboxException("[NONEXISTENT] Mailbox doesn't exist")
        folder.subscribed = True

    def unsubscribe(self, name: str) -> None:
        folder = self.account.folder(name)
        if folder is not None:
            folder.subscribed = False

    def listMailboxes(self, ref: str, wildcard: str) -> list[tuple[str, LabMailbox]]:
        pattern = _list_pattern(ref + wildcard, self.store.separator)
        return [
            (folder.name, self.mailbox(folder))
            for folder in self.account.folders.values()
            # INBOX is the one name that is case-insensitive (RFC 3501 §5.1).
            if re.fullmatch(pattern, folder.name, re.IGNORECASE if folder.name == INBOX else 0)
        ]

    # INamespacePresenter
    def getPersonalNamespaces(self) -> list[list[bytes]]:
        return [[self.store.prefix.encode(), self.store.separator.encode()]]

    def getSharedNamespaces(self) -> None:
        return None

    def getOtherNamespaces(self) -> None:
        return None

    def getUserNamespaces(self) -> None:
        return None


def _list_pattern(pattern: str, separator: str) -> str:
    """LIST wildcards as a regular expression: ``*`` matches anything, ``%`` anything but the separator."""
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append(f"[^{re.escape(separator)}]*")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _parse_date(date: bytes | str | None) -> datetime:
    """APPEND's IMAP date-time (``"17-Jul-1996 02:44:25 -0700"``, read without the locale), or the
    RFC 5322 date Twisted's COPY passes on; now when there is none."""
    if not date:
        return datetime.now(UTC).replace(microsecond=0)
    text = (date.decode("ascii") if isinstance(date, bytes) else date).strip()
    if "," in text or text[:1].isalpha():
        return parsedate_to_datetime(text)
    day, month, rest = text.split("-", 2)
    year, clock, zone = rest.split(" ")
    hour, minute, second = (int(x) for x in clock.split(":"))
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    tz = timezone(offset if zone[0] == "+" else -offset)
    return datetime(int(year), _MONTHS.index(month.title()) + 1, int(day), hour, minute, second, tzinfo=tz)


def _command(handler: Callable[..., None], *arguments: object) -> Any:
    """How Twisted's IMAP4Server declares a command: the handler, then how to parse each argument."""
    return (handler, *arguments)


def _quoted(value: str) -> bytes:
    raw = value.encode("imap4-utf-7")
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


# --- the protocol -------------------------------------------------------------------------------


class LabIMAPServer(imap4.IMAP4Server):
    """Twisted's server with the changes listed in the module docstring."""

    store: MailStore
    account: LabAccount | None
    mbox: LabMailbox | None

    def __init__(self, store: MailStore) -> None:
        super().__init__(chal={b"PLAIN": MasterPlainCredentials})
        self.store = store
        self.IDENT = f"{store.name} IMAP4rev1 ready (cutover demo lab)".encode()

    def capabilities(self) -> dict[bytes, list[bytes] | None]:
        caps: dict[bytes, list[bytes] | None] = super().capabilities()
        if self.store.max_message_bytes:
            caps[b"APPENDLIMIT=%d" % self.store.max_message_bytes] = None
        return caps

    # -- APPEND: refuse what is too big before the client sends it --------------------------------

    def dispatchCommand(self, tag: bytes, cmd: bytes, rest: bytes | None, uid: int | None = None) -> None:
        limit = self.store.max_message_bytes
        if cmd.upper() == b"APPEND" and limit and rest and self.state in ("auth", "select"):
            literal = _LITERAL_AT_END.search(rest.rstrip())
            if literal and int(literal.group(1)) > limit:
                self.sendNegativeResponse(
                    tag,
                    b"[TOOBIG] Message too large: %d bytes, this server accepts at most %d"
                    % (int(literal.group(1)), limit),
                )
                return
        super().dispatchCommand(tag, cmd, rest, uid)

    def _cbAppendGotMailbox(
        self, mbox: LabMailbox | None, tag: bytes, flags: list[bytes], date: bytes | None, message: IO[bytes]
    ) -> None:
        if mbox is None:
            self.sendNegativeResponse(tag, b"[TRYCREATE] Mailbox doesn't exist")
            return
        names = [f.decode("utf-8", "replace") for f in flags]
        uid = mbox.addMessage(message, names, date)

        def done(_: object) -> None:
            self.sendUntaggedResponse(b"%d EXISTS" % mbox.getMessageCount())
            self.sendPositiveResponse(tag, b"APPEND completed")

        def failed(failure: Any) -> None:
            self.sendNegativeResponse(tag, b"APPEND failed: " + str(failure.value).encode())

        uid.addCallbacks(done, failed)

    # -- SELECT / EXAMINE -------------------------------------------------------------------------

    def _select(self, tag: bytes, name: bytes, rw: int, command: bytes) -> None:
        self.mbox, self.state = None, "auth"
        folder = self._open_folder(tag, name)
        if folder is None:
            return
        assert self.account is not None
        mbox = self.account.mailbox(folder)
        flags = " ".join(MESSAGE_FLAGS).encode()
        self.sendUntaggedResponse(b"FLAGS (" + flags + b")")
        self.sendUntaggedResponse(b"%d EXISTS" % mbox.getMessageCount())
        self.sendUntaggedResponse(b"0 RECENT")
        self.sendPositiveResponse(None, b"[PERMANENTFLAGS (" + flags + b" \\*)] Flags permitted.")
        self.sendPositiveResponse(None, b"[UIDVALIDITY %d] UIDs valid" % mbox.getUIDValidity())
        self.sendPositiveResponse(None, b"[UIDNEXT %d] Predicted next UID" % mbox.getUIDNext())
        mode = b"READ-WRITE" if rw else b"READ-ONLY"
        self.sendPositiveResponse(tag, b"[" + mode + b"] " + command + b" completed")
        self.mbox, self.state = mbox, "select"

    def _folder(self, name: bytes) -> Folder | None:
        assert self.account is not None
        return self.account.folder(name.decode("imap4-utf-7"))

    def _open_folder(self, tag: bytes, name: bytes) -> Folder | None:
        """The folder ``name``, or None after answering ``tag`` with why it can't be opened."""
        folder = self._folder(name)
        if folder is None:
            self.sendNegativeResponse(tag, b"[NONEXISTENT] Mailbox doesn't exist: " + name)
        elif folder.refusal:
            self.sendNegativeResponse(tag, folder.refusal.encode())
            return None
        return folder

    auth_SELECT = _command(_select, imap4.IMAP4Server.arg_astring, 1, b"SELECT")
    select_SELECT = auth_SELECT
    auth_EXAMINE = _command(_select, imap4.IMAP4Server.arg_astring, 0, b"EXAMINE")
    select_EXAMINE = auth_EXAMINE

    # -- STATUS -----------------------------------------------------------------------------------

    def _status(self, tag: bytes, name: bytes, items: list[bytes]) -> None:
        folder = self._open_folder(tag, name)
        if folder is None:
            return
        assert self.account is not None
        wanted = [i.decode("ascii", "replace").upper() for i in items]
        values = self.account.mailbox(folder).requestStatus(wanted)
        unknown = [w for w in wanted if w not in values]
        if unknown:
            self.sendBadResponse(tag, b"Unknown STATUS item " + unknown[0].encode())
            return
        shown = " ".join(f"{key} {values[key]}" for key in wanted).encode()
        self.sendUntaggedResponse(b"STATUS " + _quoted(folder.name) + b" (" + shown + b")")
        self.sendPositiveResponse(tag, b"STATUS completed")

    auth_STATUS = _command(_status, imap4.IMAP4Server.arg_astring, imap4.IMAP4Server.arg_plist)
    select_STATUS = auth_STATUS

    # -- LIST / LSUB ------------------------------------------------------------------------------

    def _cbListWork(
        self, mailboxes: list[tuple[str, LabMailbox]], tag: bytes, sub: int, command: bytes
    ) -> None:
        for name, box in mailboxes:
            if sub and not box.folder.subscribed:
                continue
            attributes = " ".join(box.list_attributes()).encode()
            separator = _quoted(box.getHierarchicalDelimiter())
            self.sendUntaggedResponse(command + b" (" + attributes + b") " + separator + b" " + _quoted(name))
        self.sendPositiveResponse(tag, command + b" completed")

    # -- FETCH: a corrupt message answers NO, the others are delivered ------------------------------

    def _fetch(self, tag: bytes, messages: MessageSet, query: list[Any], uid: int = 0) -> None:
        if not query:
            self.sendPositiveResponse(tag, b"FETCH completed")
            return
        assert isinstance(self.mbox, LabMailbox)
        wants_body = any(getattr(part, "type", "") in _BODY_ITEMS for part in query)
        results = iter(self.mbox.fetch(messages, bool(uid)))
        refused: list[str] = []
        old_timeout = self.setTimeout(None)
        self.blocked = []  # commands pipelined behind this FETCH wait for it, as in Twisted's FETCH

        def next_message(_: object = None) -> defer.Deferred[Any] | None:
            for seq, message in results:
                if wants_body and message.stored.corrupt:
                    refused.append(message.stored.corrupt)
                    continue
                spewed: defer.Deferred[Any] = self.spewMessage(seq, message, query, uid)
                return spewed.addCallback(next_message)
            self.setTimeout(old_timeout)
            if refused:
                self.sendNegativeResponse(tag, refused[0].encode())
            else:
                self.sendPositiveResponse(tag, b"FETCH completed")
            self._unblock()
            return None

        next_message()

    select_FETCH = _command(_fetch, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_fetchatt)


@implementer(IRealm)
class LabRealm:
    def __init__(self, store: MailStore) -> None:
        self.store = store

    def requestAvatar(
        self, avatar_id: str | bytes, mind: object, *interfaces: Any
    ) -> tuple[Any, LabAccount, Callable[[], None]]:
        if IAccount not in interfaces:
            raise NotImplementedError("the lab's IMAP realm only serves IMAP accounts")
        user = avatar_id.decode() if isinstance(avatar_id, bytes) else avatar_id
        account = self.store.account(user)
        assert account is not None
        return IAccount, LabAccount(self.store, account), lambda: None


class LabIMAPFactory(protocol.Factory):
    def __init__(self, store: MailStore) -> None:
        self.store = store
        self.portal = Portal(cast(IRealm, LabRealm(store)), [cast(ICredentialsChecker, StoreChecker(store))])

    def buildProtocol(self, addr: object) -> LabIMAPServer:
        server = LabIMAPServer(self.store)
        server.portal = self.portal  # type: ignore[assignment]  # Twisted declares portal = None
        server.factory = self
        return server

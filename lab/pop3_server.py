"""POP3 for the lab's legacy platform: Twisted's ``POP3`` protocol (twisted.mail.pop3) over the
INBOX of a ``MailStore`` account, the same messages the IMAP server shows.

Speaks USER/PASS (own password, or ``user*master`` with the master password: Dovecot's master
login), CAPA, STAT, LIST, UIDL, TOP, RETR, DELE, RSET, NOOP, QUIT. UIDLs are
``<UIDVALIDITY>.<UID>``, stable across sessions. A corrupt message answers ``-ERR`` with its words.

Changed from Twisted: a message is sent exactly as stored. Twisted rewrites every LF to CRLF and
byte-stuffs dots chunk by chunk, which doubles the CR of a CRLF message and misses a dot at a
chunk boundary; here the whole message is stuffed once and sent as is, so RETR returns the bytes
that LIST counted.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import IO, Any, cast

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet import protocol
from zope.interface import implementer

from lab.auth import StoreChecker
from lab.mailstore import Account, MailStore, StoredMessage
from lab.twisted_mail import pop3


@implementer(pop3.IMailbox)
class LabMaildrop:
    """One session's view of an INBOX: fixed at login, deletions applied at QUIT (RFC 1939)."""

    def __init__(self, account: Account) -> None:
        self.folder = account.inbox
        self.messages: list[StoredMessage] = list(self.folder.messages)
        self.deleted: set[int] = set()

    def listMessages(self, index: int | None = None) -> list[int] | int:
        if index is None:
            return [0 if i in self.deleted else len(m.body) for i, m in enumerate(self.messages)]
        return len(self._message(index).body)

    def corruption(self, index: int) -> str | None:
        try:
            return self._message(index).corrupt
        except ValueError:
            return None

    def getMessage(self, index: int) -> IO[bytes]:
        message = self._message(index)
        stuffed = message.body.replace(b"\r\n.", b"\r\n..")
        return BytesIO(b"." + stuffed if stuffed.startswith(b".") else stuffed)

    def getUidl(self, index: int) -> bytes:
        return b"%d.%d" % (self.folder.uidvalidity, self._message(index).uid)

    def deleteMessage(self, index: int) -> None:
        self._message(index)
        self.deleted.add(index)

    def undeleteMessages(self) -> None:
        self.deleted.clear()

    def sync(self) -> None:
        gone = {id(self.messages[i]) for i in self.deleted}
        self.folder.messages = [m for m in self.folder.messages if id(m) not in gone]
        self.deleted.clear()

    def _message(self, index: int) -> StoredMessage:
        if index < 0 or index >= len(self.messages) or index in self.deleted:
            raise ValueError(f"no message {index + 1}")
        return self.messages[index]


class LabPOP3(pop3.POP3):
    def connectionMade(self) -> None:
        self.magic = b"<cutover-demo@lab>"  # APOP is not offered; the greeting still carries one
        super().connectionMade()

    def transformChunk(self, chunk: bytes) -> bytes:
        return chunk  # the maildrop already sends CRLF lines with dots stuffed

    def do_RETR(self, i: bytes) -> Any:
        if self._refused_as_corrupt(i):
            return None
        return super().do_RETR(i)

    def do_TOP(self, i: bytes, size: bytes) -> Any:
        if self._refused_as_corrupt(i):
            return None
        return super().do_TOP(i, size)

    def _refused_as_corrupt(self, i: bytes) -> bool:
        """Answer -ERR with a corrupt message's words (Twisted would say "Bad message number")."""
        assert isinstance(self.mbox, LabMaildrop)
        words = self.mbox.corruption(int(i) - 1) if i.isdigit() else None
        if words:
            self.failResponse(words.encode())
        return words is not None


@implementer(IRealm)
class MaildropRealm:
    def __init__(self, store: MailStore) -> None:
        self.store = store

    def requestAvatar(
        self, avatar_id: str | bytes, mind: object, *interfaces: Any
    ) -> tuple[Any, LabMaildrop, Callable[[], None]]:
        if pop3.IMailbox not in interfaces:
            raise NotImplementedError("the lab's POP3 realm only serves maildrops")
        user = avatar_id.decode() if isinstance(avatar_id, bytes) else avatar_id
        account = self.store.account(user)
        assert account is not None
        return pop3.IMailbox, LabMaildrop(account), lambda: None


class LabPOP3Factory(protocol.ServerFactory):
    def __init__(self, store: MailStore) -> None:
        self.store = store
        realm, checker = MaildropRealm(store), StoreChecker(store)
        self.portal = Portal(cast(IRealm, realm), [cast(ICredentialsChecker, checker)])

    def buildProtocol(self, addr: object) -> Any:
        server = LabPOP3()
        server.portal = self.portal  # type: ignore[assignment]  # Twisted declares portal = None
        server.factory = self  # type: ignore[assignment]  # and factory = None
        return server

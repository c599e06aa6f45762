"""The lab's mail storage: accounts, folders and messages in memory, shared by the IMAP, POP3 and
SMTP servers of one platform (the legacy one or the target).

Plain Python, no protocol: the servers translate commands into these calls. Every call is made
from the reactor thread, so nothing here locks. A seeded problem is data on the object it
concerns (``Folder.refusal``, ``StoredMessage.corrupt``, ``Account.login_refusal``): the servers
answer with those words, the way a real server reports a broken mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

INBOX = "INBOX"


def folder_key(name: str) -> str:
    """How an account files a folder: INBOX is case-insensitive (RFC 3501), every other name is not."""
    return INBOX if name.upper() == INBOX else name


@dataclass(slots=True)
class StoredMessage:
    uid: int
    body: bytes
    flags: set[str]
    internaldate: datetime
    #: The server's words when the body can't be read (FETCH answers NO with them).
    corrupt: str | None = None


@dataclass(slots=True)
class Folder:
    name: str  # the wire name, in the platform's own namespace ("INBOX.Sent", "Sent Items")
    uidvalidity: int
    messages: list[StoredMessage] = field(default_factory=list)
    uidnext: int = 1
    #: LIST attributes besides the hierarchy ones: special use ("\\Sent").
    attributes: tuple[str, ...] = ()
    #: The server's words when SELECT/EXAMINE/STATUS is refused: a folder that won't open.
    refusal: str | None = None
    subscribed: bool = True

    def append(
        self, body: bytes, flags: set[str], internaldate: datetime, corrupt: str | None = None
    ) -> StoredMessage:
        message = StoredMessage(self.uidnext, body, set(flags), internaldate, corrupt)
        self.messages.append(message)
        self.uidnext += 1
        return message

    def expunge(self) -> list[int]:
        """Remove the messages flagged \\Deleted; their sequence numbers, highest first."""
        gone = [seq for seq, m in enumerate(self.messages, 1) if "\\Deleted" in m.flags]
        self.messages = [m for m in self.messages if "\\Deleted" not in m.flags]
        return sorted(gone, reverse=True)


@dataclass(slots=True)
class Account:
    user: str  # the login name: the mail address
    password: str
    folders: dict[str, Folder] = field(default_factory=dict)
    #: Set when every login to this account fails (a locked account).
    login_refusal: str | None = None

    def folder(self, name: str) -> Folder | None:
        return self.folders.get(folder_key(name))

    @property
    def inbox(self) -> Folder:
        return self.folders[INBOX]


@dataclass(slots=True)
class MailStore:
    """One platform's accounts, with its namespace, its master user and its message size limit."""

    name: str  # "legacy" or "target", for greetings and logs
    separator: str
    prefix: str  # personal namespace prefix ("INBOX." on a Courier-style server)
    master_user: str
    master_password: str
    #: Largest message APPEND accepts (advertised as APPENDLIMIT); None = no limit.
    max_message_bytes: int | None = None
    accounts: dict[str, Account] = field(default_factory=dict)
    #: Folders every new account gets, with their special-use attribute.
    default_folders: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _next_validity: int = 1_700_000_001

    def account(self, user: str) -> Account | None:
        return self.accounts.get(user.lower())

    def add_account(self, user: str, password: str) -> Account:
        account = Account(user.lower(), password)
        self.accounts[account.user] = account
        self.create(account, INBOX)
        for name, attributes in self.default_folders:
            self.create(account, name).attributes = attributes
        return account

    def create(self, account: Account, name: str) -> Folder:
        key = folder_key(name)
        existing = account.folders.get(key)
        if existing is not None:
            return existing
        # Deterministic UIDVALIDITY per folder creation: the lab is the same on every start.
        folder = Folder(key, self._next_validity)
        self._next_validity += 1
        account.folders[key] = folder
        return folder

    def parents(self, name: str) -> list[str]:
        """Every ancestor of a folder name, outermost first (``INBOX.a.b`` → ``INBOX``, ``INBOX.a``)."""
        parts = name.split(self.separator)
        return [self.separator.join(parts[:i]) for i in range(1, len(parts))]

"""The emulated mailboxes: folders and items with every property as Exchange stores it.

Tests read these objects directly (``EwsEmulator.mailbox(...)``) to assert what a client made; a
client sees them only through EWS. All changes go through ``Store`` under one lock.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import threading
from dataclasses import dataclass, field

#: MAPI property tags with a meaning here (MS-OXPROPS); values are as stored.
PR_CLIENT_SUBMIT_TIME = 0x0039
PR_MESSAGE_DELIVERY_TIME = 0x0E06
PR_MESSAGE_FLAGS = 0x0E07
PR_LAST_VERB_EXECUTED = 0x1081
PR_LAST_VERB_EXECUTION_TIME = 0x1082
PR_FLAG_STATUS = 0x1090
MSGFLAG_READ = 0x1
MSGFLAG_UNSENT = 0x8
MSGFLAG_HASATTACH = 0x10

#: An extended property's identity: ("tag", "0x0e07", type) or ("name", set GUID lower-cased,
#: name or "id:N", type). Type is the EWS PropertyType ("Integer", "SystemTime", "String", …).
PropKey = tuple[str, str, str] | tuple[str, str, str, str]


def new_id(kind: bytes) -> str:
    """An opaque id in the shape of Exchange's: base64 of a binary structure (here random)."""
    return base64.b64encode(kind + secrets.token_bytes(45)).decode()


@dataclass(slots=True)
class Attachment:
    attachment_id: str
    name: str
    content_type: str
    data: bytes
    content_id: str | None = None
    is_inline: bool = False


@dataclass(slots=True)
class BodyPart:
    """A text body part as Exchange keeps it: the decoded text, not the bytes it came in."""

    content_type: str  # "text/plain" or "text/html"
    text: str


@dataclass(slots=True)
class Item:
    item_id: str
    change_key: str
    folder_id: str
    mailbox: str
    item_class: str
    subject: str
    headers: list[tuple[str, str]]  # the headers Exchange keeps, decoded
    bodies: list[BodyPart]
    attachments: list[Attachment]
    message_flags: int
    received: datetime.datetime
    sent: datetime.datetime | None
    created: datetime.datetime
    size: int
    categories: list[str] = field(default_factory=list)
    extended: dict[PropKey, str | list[str]] = field(default_factory=dict)
    internet_message_id: str | None = None

    @property
    def is_draft(self) -> bool:
        return bool(self.message_flags & MSGFLAG_UNSENT)

    @property
    def is_read(self) -> bool:
        return bool(self.message_flags & MSGFLAG_READ)

    @property
    def flag_status(self) -> int | None:
        value = self.extended.get(("tag", f"0x{PR_FLAG_STATUS:04x}", "Integer"))
        return int(value) if isinstance(value, str) else None

    @property
    def last_verb(self) -> int | None:
        value = self.extended.get(("tag", f"0x{PR_LAST_VERB_EXECUTED:04x}", "Integer"))
        return int(value) if isinstance(value, str) else None

    def named(self, property_set: str, name: str, kind: str = "String") -> str | list[str] | None:
        """A named extended property's value (``PropertySetId`` GUID and ``PropertyName``)."""
        return self.extended.get(("name", property_set.lower(), name, kind))

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass(slots=True)
class Folder:
    folder_id: str
    change_key: str
    parent_id: str | None
    display_name: str
    folder_class: str | None
    distinguished: str | None = None
    items: dict[str, Item] = field(default_factory=dict)


#: The well-known folders of a new mailbox, as (distinguished id, display name, parent's id, class).
#: Names are those of an English-language mailbox (DistinguishedFolderId:
#: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/distinguishedfolderid).
WELL_KNOWN: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("root", "", None, None),
    ("msgfolderroot", "Top of Information Store", "root", "IPF.Note"),
    ("inbox", "Inbox", "msgfolderroot", "IPF.Note"),
    ("drafts", "Drafts", "msgfolderroot", "IPF.Note"),
    ("sentitems", "Sent Items", "msgfolderroot", "IPF.Note"),
    ("deleteditems", "Deleted Items", "msgfolderroot", "IPF.Note"),
    ("junkemail", "Junk Email", "msgfolderroot", "IPF.Note"),
    ("outbox", "Outbox", "msgfolderroot", "IPF.Note"),
    ("calendar", "Calendar", "msgfolderroot", "IPF.Appointment"),
    ("contacts", "Contacts", "msgfolderroot", "IPF.Contact"),
    ("tasks", "Tasks", "msgfolderroot", "IPF.Task"),
    ("notes", "Notes", "msgfolderroot", "IPF.StickyNote"),
    ("journal", "Journal", "msgfolderroot", "IPF.Journal"),
    ("conversationhistory", "Conversation History", "msgfolderroot", "IPF.Note"),
    ("syncissues", "Sync Issues", "msgfolderroot", "IPF.Note"),
    ("conflicts", "Conflicts", "syncissues", "IPF.Note"),
    ("localfailures", "Local Failures", "syncissues", "IPF.Note"),
    ("serverfailures", "Server Failures", "syncissues", "IPF.Note"),
    # Outside the message root (the mailbox's non-IPM subtree); names as in an English mailbox.
    ("searchfolders", "Finder", "root", None),
    ("voicemail", "Voice Mail", "searchfolders", "IPF.Note.Microsoft.Voicemail"),
    ("todosearch", "To-Do Search", "searchfolders", "IPF.Task"),
    ("recoverableitemsroot", "Recoverable Items", "root", None),
    ("recoverableitemsdeletions", "Deletions", "recoverableitemsroot", None),
    ("recoverableitemsversions", "Versions", "recoverableitemsroot", None),
    ("recoverableitemspurges", "Purges", "recoverableitemsroot", None),
    ("adminauditlogs", "AdminAuditLogs", "recoverableitemsroot", None),
    ("recipientcache", "Recipient Cache", "contacts", "IPF.Contact.RecipientCache"),
    ("quickcontacts", "{06967759-274D-40B2-A3EB-D7F9E73727D7}", "contacts", "IPF.Contact.MOC.QuickContacts"),
    ("imcontactlist", "{A9E2BC46-B3A0-4243-B315-60D991004455}", "contacts", "IPF.Contact.MOC.ImContactList"),
    ("peopleconnect", "PeopleConnect", "contacts", "IPF.Contact"),
    ("mycontacts", "MyContacts", "root", "IPF.Contact.MOC.MyContacts"),
    ("directory", "Directory", "root", None),
    ("favorites", "Favorites", "root", None),
)
ARCHIVE_WELL_KNOWN: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("archiveroot", "", None, None),
    ("archivemsgfolderroot", "Top of Information Store", "archiveroot", "IPF.Note"),
    ("archiveinbox", "Inbox", "archivemsgfolderroot", "IPF.Note"),
    ("archivedeleteditems", "Deleted Items", "archivemsgfolderroot", "IPF.Note"),
)


@dataclass(slots=True)
class Mailbox:
    address: str
    folders: dict[str, Folder] = field(default_factory=dict)
    distinguished: dict[str, str] = field(default_factory=dict)  # distinguished id → folder id
    bytes_used: int = 0  # kept as items are added, so a quota check is not a scan of the mailbox

    def folder(self, distinguished_or_name: str) -> Folder:
        """A folder by distinguished id ("inbox") or by display path ("Inbox/Projects")."""
        if distinguished_or_name in self.distinguished:
            return self.folders[self.distinguished[distinguished_or_name]]
        parent = self.folders[self.distinguished["msgfolderroot"]]
        for part in distinguished_or_name.split("/"):
            parent = next(
                f
                for f in self.folders.values()
                if f.parent_id == parent.folder_id and f.display_name.lower() == part.lower()
            )
        return parent

    def children(self, folder_id: str) -> list[Folder]:
        return [f for f in self.folders.values() if f.parent_id == folder_id]

    def used_bytes(self) -> int:
        return self.bytes_used

    def find_item(self, item_id: str) -> Item | None:
        for folder in self.folders.values():
            if item_id in folder.items:
                return folder.items[item_id]
        return None


class Store:
    """Every mailbox of the emulated organisation, and the lock that serialises their changes."""

    def __init__(self, addresses: list[tuple[str, bool]]) -> None:
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        for address, has_archive in addresses:
            mailbox = Mailbox(address)
            tree = WELL_KNOWN + (ARCHIVE_WELL_KNOWN if has_archive else ())
            for distinguished, name, parent, folder_class in tree:
                folder = Folder(
                    folder_id=new_id(b"\x01F"),
                    change_key=new_id(b"\x01C")[:40],
                    parent_id=mailbox.distinguished[parent] if parent else None,
                    display_name=name,
                    folder_class=folder_class,
                    distinguished=distinguished,
                )
                mailbox.folders[folder.folder_id] = folder
                mailbox.distinguished[distinguished] = folder.folder_id
            # Outlook's "Archive" folder has no distinguished id in EWS (the DistinguishedFolderId
            # page lists none): it is an ordinary folder under the message root.
            archive = Folder(
                new_id(b"\x01F"),
                new_id(b"\x01C")[:40],
                mailbox.distinguished["msgfolderroot"],
                "Archive",
                "IPF.Note",
            )
            mailbox.folders[archive.folder_id] = archive
            self.mailboxes[address.lower()] = mailbox

    def mailbox(self, address: str) -> Mailbox:
        return self.mailboxes[address.lower()]

    def locate_folder(self, folder_id: str) -> tuple[Mailbox, Folder] | None:
        for mailbox in self.mailboxes.values():
            if folder_id in mailbox.folders:
                return mailbox, mailbox.folders[folder_id]
        return None

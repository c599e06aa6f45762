"""The mailboxes' contents: folders, messages, attachments, and the ids Exchange gives them.

Exchange ids are opaque base64 strings; a message has a regular id that changes when it moves to
another folder and an immutable id that doesn't
(https://learn.microsoft.com/en-us/graph/outlook-immutable-id). Both resolve while valid.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

#: Well-known folder names and the display names Exchange gives them
#: (https://learn.microsoft.com/en-us/graph/api/resources/mailfolder#well-known-folder-names).
WELL_KNOWN = {
    "msgfolderroot": "Top of Information Store",
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
}


def new_id(prefix: str = "AAMkAG") -> str:
    """An opaque id in the alphabet Graph ids use (URL-safe base64 with '=' padding)."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(33)).decode("ascii")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(slots=True)
class Attachment:
    id: str
    name: str
    content_type: str
    data: bytes
    is_inline: bool = False
    content_id: str | None = None
    modified: dt.datetime = field(default_factory=utc_now)


@dataclass(slots=True)
class ExtendedProperty:
    """A single-value extended property as the client named it; key() is its normalised identity."""

    id: str
    value: str

    def key(self) -> str:
        return property_key(self.id)


def property_key(prop_id: str) -> str:
    """Normalise "Integer 0x0E07" / "integer 0xe07" / "String {GUID} Name X" for comparison: the
    type and the tag are case-insensitive, a GUID is, a property name is not."""
    parts = prop_id.split()
    if len(parts) == 2 and parts[1].lower().startswith("0x"):
        try:
            return f"{parts[0].lower()} 0x{int(parts[1], 16):04x}"
        except ValueError:
            return prop_id
    if len(parts) >= 4 and parts[2].lower() in ("name", "id"):
        return f"{parts[0].lower()} {parts[1].lower()} {parts[2].lower()} {' '.join(parts[3:])}"
    return prop_id


_TYPE_NAMES = {
    name.lower(): name
    for name in (
        "Binary",
        "Boolean",
        "Short",
        "Integer",
        "Long",
        "Float",
        "Double",
        "Currency",
        "SystemTime",
        "String",
        "CLSID",
    )
}


def canonical_property_id(prop_id: str) -> str:
    """The id as the service answers it, whatever the client's spelling: the type's own casing, a
    tag in lower-case hex without leading zeros ("Integer 0xe08", "String 0x7d"), a GUID in lower
    case. The docs show only named ids; clients written against the service match tagged ones
    exactly in this form (DavMail's Graph session: "Integer 0xe08", "Integer 0x1090")."""
    parts = prop_id.split()
    if not parts:
        return prop_id
    kind = _TYPE_NAMES.get(parts[0].lower(), parts[0])
    if len(parts) == 2 and parts[1].lower().startswith("0x"):
        try:
            return f"{kind} 0x{int(parts[1], 16):x}"
        except ValueError:
            return prop_id
    if len(parts) >= 4 and parts[2].lower() == "name":
        return f"{kind} {parts[1].lower()} Name {' '.join(parts[3:])}"
    if len(parts) == 4 and parts[2].lower() == "id":
        try:
            return f"{kind} {parts[1].lower()} Id 0x{int(parts[3], 16):x}"
        except ValueError:
            return prop_id
    return prop_id


@dataclass(slots=True)
class Message:
    id: str
    immutable_id: str
    folder_id: str
    route: str  # "json" (create message) or "importMime"
    created: dt.datetime
    modified: dt.datetime
    received: dt.datetime
    sent: dt.datetime | None
    is_draft: bool
    is_read: bool
    subject: str = ""
    body_type: str = "text"
    body: str = ""
    #: importMime keeps both alternatives of a multipart/alternative body; JSON create has one.
    body_text_alternative: str | None = None
    sender: dict[str, str] | None = None
    from_: dict[str, str] | None = None
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)
    bcc: list[dict[str, str]] = field(default_factory=list)
    reply_to: list[dict[str, str]] = field(default_factory=list)
    internet_message_id: str | None = None
    importance: str = "normal"
    inference: str = "focused"
    categories: list[str] = field(default_factory=list)
    flag_status: str = "notFlagged"
    #: The headers Exchange keeps; read and set them through ``headers``.
    stored_headers: list[tuple[str, str]] = field(default_factory=list)
    #: Where the headers come from until first read (header_block.py): parsing is deferred.
    header_source: Callable[[], list[tuple[str, str]]] | None = None
    in_reply_to: str | None = None
    references: str | None = None
    properties: dict[str, ExtendedProperty] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    change_key: str = field(default_factory=lambda: new_id("CQAAAB"))

    @property
    def headers(self) -> list[tuple[str, str]]:
        source = self.header_source
        if source is not None:
            # Two readers at once both parse and store the same list: harmless, so no lock.
            self.stored_headers = source()
            self.header_source = None
        return self.stored_headers

    @headers.setter
    def headers(self, value: list[tuple[str, str]]) -> None:
        self.stored_headers = value
        self.header_source = None

    def size(self) -> int:
        return len(self.body.encode()) + sum(len(a.data) for a in self.attachments) + 1024

    def touch(self) -> None:
        self.modified = utc_now()
        self.change_key = new_id("CQAAAB")


@dataclass(slots=True)
class Folder:
    id: str
    name: str
    parent_id: str | None
    well_known: str | None = None
    hidden: bool = False


class Mailbox:
    """One user's mailbox. Every access holds its lock (the server is multi-threaded)."""

    def __init__(self, address: str, user_id: str, quota_bytes: int | None, max_receive_size: int) -> None:
        self.address = address
        self.user_id = user_id
        self.quota_bytes = quota_bytes
        self.max_receive_size = max_receive_size
        self.lock = threading.RLock()
        self.folders: dict[str, Folder] = {}
        self.messages: dict[str, Message] = {}  # by immutable id
        self._by_regular_id: dict[str, str] = {}
        self._sizes: dict[str, int] = {}  # immutable id -> size counted in _used
        self.named_properties: set[str] = set()  # distinct named properties ever used (a quota)
        self._used = 0
        root = Folder(new_id("AAMkAD"), WELL_KNOWN["msgfolderroot"], None, "msgfolderroot")
        self.folders[root.id] = root
        for name, display in WELL_KNOWN.items():
            if name != "msgfolderroot":
                folder = Folder(new_id("AAMkAD"), display, root.id, name)
                self.folders[folder.id] = folder

    # folders
    def folder(self, ref: str) -> Folder | None:
        """A folder by id or well-known name (case-insensitive, as Graph takes them)."""
        found = self.folders.get(ref)
        if found is not None:
            return found
        lowered = ref.lower()
        return next((f for f in self.folders.values() if f.well_known == lowered), None)

    def root(self) -> Folder:
        found = self.folder("msgfolderroot")
        assert found is not None
        return found

    def children(self, folder_id: str) -> list[Folder]:
        return [f for f in self.folders.values() if f.parent_id == folder_id]

    def add_folder(self, parent_id: str, name: str) -> Folder:
        folder = Folder(new_id("AAMkAD"), name, parent_id)
        self.folders[folder.id] = folder
        return folder

    def folder_path(self, folder_id: str) -> str:
        """Display names from below the root, joined with "/" (for inspection)."""
        names: list[str] = []
        folder = self.folders.get(folder_id)
        while folder is not None and folder.parent_id is not None:
            names.append(folder.name)
            folder = self.folders.get(folder.parent_id)
        return "/".join(reversed(names))

    # messages
    def add_message(self, message: Message) -> None:
        self.messages[message.immutable_id] = message
        self._by_regular_id[message.id] = message.immutable_id
        self.resized(message)

    def resized(self, message: Message) -> None:
        """Recount a message's size (after it was added or an attachment joined it)."""
        size = message.size()
        self._used += size - self._sizes.get(message.immutable_id, 0)
        self._sizes[message.immutable_id] = size

    def message(self, ref: str) -> Message | None:
        """By regular id (only the current one) or immutable id."""
        found = self.messages.get(ref)
        if found is not None:
            return found
        immutable = self._by_regular_id.get(ref)
        return self.messages.get(immutable) if immutable else None

    def move(self, message: Message, folder_id: str) -> None:
        """Moving to another folder gives the item a new regular id; the old one stops resolving."""
        if message.folder_id == folder_id:
            return
        del self._by_regular_id[message.id]
        message.id = new_id()
        message.folder_id = folder_id
        message.touch()
        self._by_regular_id[message.id] = message.immutable_id

    def delete(self, message: Message) -> None:
        self.messages.pop(message.immutable_id, None)
        self._by_regular_id.pop(message.id, None)
        self._used -= self._sizes.pop(message.immutable_id, 0)

    def in_folder(self, folder_id: str) -> Iterator[Message]:
        return (m for m in self.messages.values() if m.folder_id == folder_id)

    def used_bytes(self) -> int:
        """Bytes the mailbox holds (kept as items come and go: a quota check per create stays cheap)."""
        return self._used

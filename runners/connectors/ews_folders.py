"""An Exchange mailbox's folder tree, as the folder plan names it.

A folder plan's name (``FolderMapping.target_wire``) is the path joined with ``/``: ``INBOX`` and
``INBOX/Receipts`` live in the Inbox, ``Sent Items`` (the plan's special folders are the
distinguished folders' own display names) and ``Projects/2023`` under the message folder root.
Exchange compares sibling names case-insensitively (a second "projects" is ErrorFolderExists), so
names are looked up by their casefold.

Requests: one GetFolder for the distinguished folders and one deep FindFolder under msgfolderroot
when the tree is first needed, one CreateFolder per folder created.
(learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getfolder-operation,
.../findfolder-operation, .../createfolder-operation, .../distinguishedfolderid)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.connectors.ews_wire import Element, Wire, m, mn, t, tn
from runners.folders import decode_segment

#: IMAP special use → distinguished folder id. Exchange Server has no distinguished id for the
#: Archive folder of Outlook's one-click archive ("archive*" ids name the archive mailbox): the
#: plan's Archive is a folder named "Archive" under the message root.
DISTINGUISHED = {
    "\\Sent": "sentitems",
    "\\Drafts": "drafts",
    "\\Trash": "deleteditems",
    "\\Junk": "junkemail",
}
ARCHIVE_NAME = "Archive"
#: Folders whose display names are kept from the plan (their items would be sent, or go nowhere a
#: user looks): with non-mail folders found at the top level (Calendar, Contacts, ...), they make
#: ``TargetLayout.reserved``.
RESERVED_IDS = {"outbox": "its items are sent"}
RESERVED_NAMES = {
    "sync issues": "Outlook keeps synchronisation logs there",
    "conversation history": "Skype for Business keeps it",
}
MAIL_CLASS = "IPF.Note"
PAGE = 1000


@dataclass(slots=True)
class FolderNode:
    id: str
    name: str
    parent: str | None
    folder_class: str | None
    total: int = 0
    children: dict[str, FolderNode] = field(default_factory=dict)  # casefold name → node


class FolderTree:
    """The mailbox's folders below msgfolderroot, loaded once and kept current as we create."""

    def __init__(self, wire: Wire, mailbox: str) -> None:
        self.wire = wire
        self.mailbox = mailbox
        self.root: FolderNode | None = None
        self.inbox: FolderNode | None = None
        self.special: dict[str, FolderNode] = {}
        self.reserved: dict[str, str] = {}

    def distinguished(self, name: str) -> Element:
        folder = t("DistinguishedFolderId", Id=name)
        mailbox = t("Mailbox")
        mailbox.append(t("EmailAddress", self.mailbox))
        folder.append(mailbox)
        return folder

    def load(self) -> None:
        ids = ["msgfolderroot", "inbox", *DISTINGUISHED.values(), *RESERVED_IDS]
        request = m("GetFolder")
        request.append(_folder_shape())
        folder_ids = m("FolderIds")
        for name in ids:
            folder_ids.append(self.distinguished(name))
        request.append(folder_ids)
        found: dict[str, FolderNode] = {}
        for name, answer in zip(ids, self.wire.call("GetFolder", request), strict=False):
            if isinstance(answer, Exception):
                if name in ("msgfolderroot", "inbox"):
                    raise answer
                continue  # a mailbox without that default folder (never created): nothing to map
            folders = answer.find(mn("Folders"))
            if folders is not None and len(folders):
                found[name] = _node(folders[0])
        self.root = found["msgfolderroot"]
        by_id = {self.root.id: self.root}
        for node in self._descendants():
            by_id[node.id] = node
        for node in sorted(by_id.values(), key=lambda n: n is not self.root):
            parent = by_id.get(node.parent or "")
            if parent is not None and node is not self.root:
                parent.children[node.name.casefold()] = node
        self.inbox = by_id.get(found["inbox"].id, found["inbox"])
        self.special = {
            use: by_id.get(found[i].id, found[i]) for use, i in DISTINGUISHED.items() if i in found
        }
        self.reserved = {
            by_id.get(found[i].id, found[i]).name.casefold(): why
            for i, why in RESERVED_IDS.items()
            if i in found
        } | dict(RESERVED_NAMES)
        for node in self.root.children.values():
            if node.folder_class and not node.folder_class.startswith(MAIL_CLASS):
                self.reserved[node.name.casefold()] = f"a {node.folder_class} folder, not one for mail"

    def _descendants(self) -> list[FolderNode]:
        assert self.root is not None
        out: list[FolderNode] = []
        offset = 0
        while True:
            request = m("FindFolder", Traversal="Deep")
            request.append(_folder_shape())
            request.append(
                m(
                    "IndexedPageFolderView",
                    MaxEntriesReturned=str(PAGE),
                    Offset=str(offset),
                    BasePoint="Beginning",
                )
            )
            parents = m("ParentFolderIds")
            parents.append(t("FolderId", Id=self.root.id))
            request.append(parents)
            (answer,) = self.wire.call("FindFolder", request)
            if isinstance(answer, Exception):
                raise answer
            page = answer.find(mn("RootFolder"))
            folders = page.find(tn("Folders")) if page is not None else None
            batch = [_node(e) for e in (folders if folders is not None else [])]
            out.extend(batch)
            if page is None or page.get("IncludesLastItemInRange", "true") == "true" or not batch:
                return out
            offset += len(batch)

    def ensure_loaded(self) -> None:
        if self.root is None:
            self.load()

    def special_names(self) -> dict[str, str]:
        """``TargetLayout.special``: each distinguished folder's display name, and Archive."""
        self.ensure_loaded()
        names = {use: node.name for use, node in self.special.items()}
        names["\\Archive"] = ARCHIVE_NAME
        return names

    def _start(self, segments: list[str]) -> tuple[FolderNode, list[str]]:
        assert self.root is not None and self.inbox is not None
        if segments and segments[0].upper() == "INBOX":
            return self.inbox, segments[1:]
        return self.root, segments

    def find(self, wire: str) -> FolderNode | None:
        self.ensure_loaded()
        node, rest = self._start(segments_of(wire))
        for segment in rest:
            child = node.children.get(segment.casefold())
            if child is None:
                return None
            node = child
        return node

    def existing(self) -> set[str]:
        """Every folder as a plan name (``INBOX/...`` for the Inbox's subtree)."""
        self.ensure_loaded()
        assert self.root is not None and self.inbox is not None
        out: set[str] = {"INBOX"}
        stack: list[tuple[FolderNode, str]] = [(c, c.name) for c in self.root.children.values()]
        stack += [(c, f"INBOX/{c.name}") for c in self.inbox.children.values()]
        while stack:
            node, name = stack.pop()
            if node is not self.inbox:
                out.add(name)
            stack.extend((c, f"{name}/{c.name}") for c in node.children.values())
        return out

    def create(self, wire: str) -> list[str]:
        """Create the folder and any missing parents; returns the plan names created, outermost first."""
        self.ensure_loaded()
        segments = segments_of(wire)
        node, rest = self._start(segments)
        done = segments[: len(segments) - len(rest)]
        created: list[str] = []
        for segment in rest:
            done.append(segment)
            child = node.children.get(segment.casefold())
            if child is None:
                child = self._create_one(node, segment)
                created.append("/".join(done))
            node = child
        return created

    def _create_one(self, parent: FolderNode, name: str) -> FolderNode:
        request = m("CreateFolder")
        parent_id = m("ParentFolderId")
        parent_id.append(t("FolderId", Id=parent.id))
        request.append(parent_id)
        folders = m("Folders")
        folder = t("Folder")
        folder.append(t("FolderClass", MAIL_CLASS))
        folder.append(t("DisplayName", name))
        folders.append(folder)
        request.append(folders)
        (answer,) = self.wire.call("CreateFolder", request)
        if isinstance(answer, Exception):
            raise answer
        created = answer.find(mn("Folders"))
        folder_id = created[0].find(tn("FolderId")) if created is not None and len(created) else None
        if folder_id is None:
            raise ValueError(f"CreateFolder {name!r} answered without a FolderId")
        node = FolderNode(folder_id.get("Id"), name, parent.id, MAIL_CLASS)
        parent.children[name.casefold()] = node
        return node

    def counts(self, ids: list[str]) -> list[int | Exception]:
        """TotalCount of each folder id, in one GetFolder."""
        request = m("GetFolder")
        request.append(_folder_shape())
        folder_ids = m("FolderIds")
        for folder_id in ids:
            folder_ids.append(t("FolderId", Id=folder_id))
        request.append(folder_ids)
        out: list[int | Exception] = []
        for answer in self.wire.call("GetFolder", request):
            if isinstance(answer, Exception):
                out.append(answer)
                continue
            folders = answer.find(mn("Folders"))
            out.append(_node(folders[0]).total if folders is not None and len(folders) else 0)
        return out


def segments_of(wire: str) -> list[str]:
    """A plan name's segments, decoded (the folder plan encodes non-ASCII names as IMAP's mUTF-7)."""
    return [decode_segment(s) for s in wire.split("/") if s]


def _folder_shape() -> Element:
    shape = m("FolderShape")
    shape.append(t("BaseShape", "Default"))
    extra = t("AdditionalProperties")
    for uri in ("folder:ParentFolderId", "folder:FolderClass"):
        extra.append(t("FieldURI", FieldURI=uri))
    shape.append(extra)
    return shape


def _node(element: Element) -> FolderNode:
    def text(tag: str) -> str | None:
        child = element.find(tn(tag))
        return None if child is None else child.text

    folder_id = element.find(tn("FolderId"))
    parent = element.find(tn("ParentFolderId"))
    total = text("TotalCount")
    return FolderNode(
        id=folder_id.get("Id") if folder_id is not None else "",
        name=text("DisplayName") or "",
        parent=parent.get("Id") if parent is not None else None,
        folder_class=text("FolderClass"),
        total=int(total) if total and total.isdigit() else 0,
    )

"""A mailbox's folder tree over Microsoft Graph: wire names (as the folder plan makes them, ``/``
between segments, segments in modified UTF-7 like every target's) to folder ids, and back.

* Special folders are found by their well-known names (inbox, sentitems, drafts, deleteditems,
  junkemail, archive: https://learn.microsoft.com/graph/api/resources/mailfolder), whatever the
  mailbox's language calls them; the folder plan gets their display names as ``TargetLayout.special``.
* The hierarchy is walked with ``childFolders``, only below folders whose ``childFolderCount`` says
  there is something, every listing followed through ``@odata.nextLink``.
* Names compare case-insensitively, as Exchange does (``INBOX`` is the Inbox).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from runners.connectors.graph_errors import GraphFailure, error_for, failure_of
from runners.connectors.graph_http import GraphHttp
from runners.folders import decode_segment, encode_segment
from runners.model import TargetLayout

SEPARATOR = "/"
#: RFC 6154 special use → Graph's well-known folder name.
WELL_KNOWN = {
    "\\Sent": "sentitems",
    "\\Drafts": "drafts",
    "\\Trash": "deleteditems",
    "\\Junk": "junkemail",
    "\\Archive": "archive",
}
READ_PERMISSION = "Mail.ReadWrite"
_FIELDS = "id,displayName,childFolderCount,totalItemCount"


@dataclass(slots=True)
class Folder:
    id: str
    name: str
    children: int
    total: int


def folder_key(path: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(segment.casefold() for segment in path)


class GraphFolders:
    """The folders of one mailbox (``base`` = ``/users/{id}``), looked up once and kept."""

    def __init__(self, http: GraphHttp, base: str) -> None:
        self.http = http
        self.base = base
        self._by_path: dict[tuple[str, ...], Folder] | None = None
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}  # casefolded → as the target spells it
        self._special: dict[str, str] | None = None
        self._inbox: str | None = None

    # -- reading -------------------------------------------------------------------------------

    def _well_known(self, name: str) -> Folder | None:
        operation = f"GET mailFolders/{name}"
        response = self.http.send(
            "GET", f"{self.base}/mailFolders/{name}", operation, params={"$select": _FIELDS}
        )
        if response.status_code == 404 and failure_of(response).code in (
            "ErrorFolderNotFound",
            "ResourceNotFound",
        ):
            return None  # archive exists only where the mailbox has one
        data = self.http.check(response, operation, READ_PERMISSION).json()
        return _folder(data)

    def inbox_name(self) -> str:
        """The Inbox's display name in this mailbox's language (``INBOX`` in a wire name means it)."""
        if self._inbox is None:
            inbox = self._well_known("inbox")
            self._inbox = inbox.name if inbox is not None else "Inbox"
        return self._inbox

    def special(self) -> dict[str, str]:
        """Special use → the folder's path joined with ``/`` (its display name; all are top-level)."""
        if self._special is None:
            found: dict[str, str] = {}
            for use, name in WELL_KNOWN.items():
                folder = self._well_known(name)
                if folder is not None:
                    found[use] = folder.name
            self._special = found
        return self._special

    def layout(self) -> TargetLayout:
        return TargetLayout(SEPARATOR, "", dict(self.special()))

    def tree(self) -> dict[tuple[str, ...], Folder]:
        """Casefolded path → folder, for every folder of the mailbox."""
        if self._by_path is None:
            by_path: dict[tuple[str, ...], Folder] = {}
            self._walk(f"{self.base}/mailFolders", (), by_path)
            self._by_path = by_path
        return self._by_path

    def _walk(self, url: str, parent: tuple[str, ...], out: dict[tuple[str, ...], Folder]) -> None:
        for data in self.http.pages(
            url, "GET mailFolders", READ_PERMISSION, {"$select": _FIELDS, "$top": "250"}
        ):
            folder = _folder(data)
            path = (*parent, folder.name)
            out[folder_key(path)] = folder
            self._names[folder_key(path)] = path
            if folder.children:
                self._walk(f"{self.base}/mailFolders/{quote(folder.id, safe='')}/childFolders", path, out)

    def wire_names(self) -> Iterator[str]:
        inbox = folder_key((self.inbox_name(),))
        for key in list(self.tree()):
            path = self._names[key]
            yield wire_name(("INBOX", *path[1:]) if key[:1] == inbox else path)

    def path(self, wire: str) -> tuple[str, ...]:
        """Wire name → display-name path, a leading ``INBOX`` as the Inbox's own name."""
        path = path_of(wire)
        if path and path[0].casefold() == "inbox":
            return (self.inbox_name(), *path[1:])
        return path

    def find(self, wire: str) -> Folder | None:
        return self.tree().get(folder_key(self.path(wire)))

    def require(self, wire: str) -> Folder:
        folder = self.find(wire)
        if folder is None:
            # Another session of this mailbox may have created it since we looked: look again once.
            self._by_path = None
            folder = self.find(wire)
        if folder is None:
            raise error_for(self.http.server, f"folder {wire}", _not_found(wire), READ_PERMISSION)
        return folder

    # -- creating ------------------------------------------------------------------------------

    def create(self, wire: str) -> list[str]:
        """Create the folder and any missing parents (Graph has no folder without its parent);
        returns the wire names created, outermost first."""
        path = self.path(wire)
        tree = self.tree()
        created: list[str] = []
        parent: Folder | None = None
        for depth in range(1, len(path) + 1):
            here = path[:depth]
            folder = tree.get(folder_key(here))
            if folder is None:
                folder = self._create_one(parent, here)
                tree[folder_key(here)] = folder
                self._names[folder_key(here)] = here
                created.append(wire_name(path_of(wire)[:depth]))
            parent = folder
        return created

    def _create_one(self, parent: Folder | None, path: tuple[str, ...]) -> Folder:
        url = (
            f"{self.base}/mailFolders"
            if parent is None
            else f"{self.base}/mailFolders/{quote(parent.id, safe='')}/childFolders"
        )
        operation = f"create folder {wire_name(path)}"
        response = self.http.send("POST", url, operation, json={"displayName": path[-1]})
        if response.status_code == 409:  # ErrorFolderExists: another session made it meanwhile
            self._by_path = None
            existing = self.tree().get(folder_key(path))
            if existing is not None:
                return existing
        data = self.http.check(response, operation, READ_PERMISSION).json()
        return _folder(data)


def path_of(wire: str) -> tuple[str, ...]:
    """Wire name → display-name path (``INBOX`` is the Inbox, compared without case)."""
    return tuple(decode_segment(segment) for segment in wire.split(SEPARATOR) if segment)


def wire_name(path: tuple[str, ...]) -> str:
    return SEPARATOR.join(encode_segment(segment) for segment in path)


def _folder(data: dict[str, object]) -> Folder:
    return Folder(
        id=str(data["id"]),
        name=str(data.get("displayName", "")),
        children=int(str(data.get("childFolderCount") or 0)),
        total=int(str(data.get("totalItemCount") or 0)),
    )


def _not_found(wire: str) -> GraphFailure:
    return GraphFailure(404, "ErrorFolderNotFound", f"no folder {wire} in this mailbox")

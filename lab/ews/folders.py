"""GetFolder, FindFolder and CreateFolder."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lab.ews.context import Context, Unmodelled
from lab.ews.fielduris import FIELD_URIS
from lab.ews.soap import ItemError, element, failure, q, schema_error, success, text_of
from lab.ews.store import Folder, Mailbox, new_id

_MODELLED = (
    "folder:FolderId",
    "folder:ParentFolderId",
    "folder:FolderClass",
    "folder:DisplayName",
    "folder:TotalCount",
    "folder:ChildFolderCount",
    "folder:UnreadCount",
)
_BASE_SHAPES = {
    "IdOnly": ("folder:FolderId",),
    "Default": (
        "folder:FolderId",
        "folder:DisplayName",
        "folder:TotalCount",
        "folder:ChildFolderCount",
        "folder:UnreadCount",
    ),
    "AllProperties": _MODELLED,
}
#: The element a folder is answered as, by its class (BaseFolderType's substitution group).
_FOLDER_ELEMENT = {
    "IPF.Appointment": "t:CalendarFolder",
    "IPF.Contact": "t:ContactsFolder",
    "IPF.Task": "t:TasksFolder",
}
#: Reserved names: the documentation lists none for CreateFolder; the emulator refuses only names
#: that collide with a sibling, well-known folders included ("Inbox" under the message root).


def shape_fields(shape: ET.Element | None) -> tuple[str, ...]:
    if shape is None:
        raise schema_error("The element 'FolderShape' is required.")
    base = text_of(shape.find(q("t:BaseShape")))
    if base not in _BASE_SHAPES:
        raise schema_error(f"The 'BaseShape' element is invalid - The value '{base}' is invalid.")
    fields = list(_BASE_SHAPES[base])
    extra = shape.find(q("t:AdditionalProperties"))
    for path in extra if extra is not None else ():
        if path.tag == q("t:FieldURI"):
            uri = path.get("FieldURI", "")
            if uri not in FIELD_URIS:
                raise schema_error(f"The 'FieldURI' attribute is invalid - The value '{uri}' is invalid.")
            fields.append(uri)
        else:
            raise Unmodelled("extended or indexed properties on folders")
    return tuple(dict.fromkeys(fields))


def render_folder(mailbox: Mailbox, folder: Folder, fields: tuple[str, ...]) -> str:
    """A folder's properties in the schema's order (FolderType)."""
    children: list[str] = []
    if "folder:FolderId" in fields:
        children.append(element("t:FolderId", {"Id": folder.folder_id, "ChangeKey": folder.change_key}))
    if "folder:ParentFolderId" in fields and folder.parent_id:
        parent = mailbox.folders[folder.parent_id]
        children.append(element("t:ParentFolderId", {"Id": parent.folder_id, "ChangeKey": parent.change_key}))
    if "folder:FolderClass" in fields and folder.folder_class:
        children.append(element("t:FolderClass", text=folder.folder_class))
    if "folder:DisplayName" in fields:
        children.append(element("t:DisplayName", text=folder.display_name))
    if "folder:TotalCount" in fields:
        children.append(element("t:TotalCount", text=str(len(folder.items))))
    if "folder:ChildFolderCount" in fields:
        children.append(element("t:ChildFolderCount", text=str(len(mailbox.children(folder.folder_id)))))
    if "folder:UnreadCount" in fields:
        unread = sum(1 for item in folder.items.values() if not item.is_read)
        children.append(element("t:UnreadCount", text=str(unread)))
    return element(_FOLDER_ELEMENT.get(folder.folder_class or "", "t:Folder"), None, *children)


def get_folder(ctx: Context, body: ET.Element) -> list[str]:
    """GetFolder (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getfolder-operation)."""
    fields = shape_fields(body.find(q("m:FolderShape")))
    ids = body.find(q("m:FolderIds"))
    if ids is None or not len(ids):
        raise schema_error("The element 'GetFolder' has incomplete content: 'FolderIds' expected.")
    messages = []
    for node in ids:
        try:
            mailbox, folder = ctx.folder(node)
        except ItemError as error:
            messages.append(failure("GetFolder", error, element("m:Folders")))
            continue
        messages.append(
            success("GetFolder", element("m:Folders", None, render_folder(mailbox, folder, fields)))
        )
    return messages


def find_folder(ctx: Context, body: ET.Element) -> list[str]:
    """FindFolder with Shallow or Deep traversal and IndexedPageFolderView paging
    (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/findfolder-operation)."""
    traversal = body.get("Traversal", "")
    if traversal not in ("Shallow", "Deep", "SoftDeleted"):
        raise schema_error(f"The 'Traversal' attribute is invalid - The value '{traversal}' is invalid.")
    if traversal == "SoftDeleted":
        raise Unmodelled("FindFolder with SoftDeleted traversal")
    if body.find(q("m:Restriction")) is not None:
        raise Unmodelled("FindFolder restrictions")
    fields = shape_fields(body.find(q("m:FolderShape")))
    offset, limit, from_end = _page(body.find(q("m:IndexedPageFolderView")))
    parents = body.find(q("m:ParentFolderIds"))
    if parents is None or not len(parents):
        raise schema_error("The element 'FindFolder' has incomplete content: 'ParentFolderIds' expected.")
    messages = []
    for node in parents:
        try:
            mailbox, parent = ctx.folder(node)
        except ItemError as error:
            messages.append(failure("FindFolder", error))
            continue
        found = (
            _descendants(mailbox, parent.folder_id)
            if traversal == "Deep"
            else mailbox.children(parent.folder_id)
        )
        start = max(len(found) - offset - limit, 0) if from_end else offset
        page = found[start : start + limit]
        last = start + len(page) >= len(found)
        root = element(
            "m:RootFolder",
            {
                "IndexedPagingOffset": str(start + len(page)),
                "TotalItemsInView": str(len(found)),
                "IncludesLastItemInRange": "true" if last else "false",
            },
            element("t:Folders", None, *(render_folder(mailbox, f, fields) for f in page)),
        )
        messages.append(success("FindFolder", root))
    return messages


def _descendants(mailbox: Mailbox, folder_id: str) -> list[Folder]:
    found: list[Folder] = []
    for child in mailbox.children(folder_id):
        found.append(child)
        found.extend(_descendants(mailbox, child.folder_id))
    return found


def _page(view: ET.Element | None) -> tuple[int, int, bool]:
    """IndexedPage(Item|Folder)View: offset, page size (EWSFindCountLimit 1000 caps it, EWS throttling
    page), and whether counted from the end."""
    if view is None:
        return 0, 1000, False
    try:
        offset = int(view.get("Offset", ""))
        limit = int(view.get("MaxEntriesReturned", "1000"))
    except ValueError:
        raise schema_error("The 'Offset' or 'MaxEntriesReturned' attribute is not an integer.") from None
    base = view.get("BasePoint", "")
    if base not in ("Beginning", "End"):
        raise schema_error(f"The 'BasePoint' attribute is invalid - The value '{base}' is invalid.")
    if offset < 0 or limit < 1:
        raise schema_error("The 'Offset' or 'MaxEntriesReturned' attribute is out of range.")
    return offset, min(limit, 1000), base == "End"


def create_folder(ctx: Context, body: ET.Element) -> list[str]:
    """CreateFolder (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createfolder-operation).

    Names collide case-insensitively among siblings: ErrorFolderExists (ResponseCode page: "the
    specified folder already exists"). Exchange compares folder display names without regard to
    case; the documentation says so only through that error, and the emulator follows what Exchange
    does in practice.
    """
    located = ctx.folder_of(body.find(q("m:ParentFolderId")))
    if located is None:
        raise schema_error("The element 'CreateFolder' has incomplete content: 'ParentFolderId' expected.")
    mailbox, parent = located
    folders = body.find(q("m:Folders"))
    messages = []
    for node in folders if folders is not None else ():
        name = text_of(node.find(q("t:DisplayName")))
        folder_class = text_of(node.find(q("t:FolderClass"))) or None
        if node.find(q("t:ExtendedProperty")) is not None:
            raise Unmodelled("extended properties on folders")
        with ctx.store.lock:
            try:
                if not name:
                    # Documentation silent on the code for an empty name: Exchange's save fails.
                    raise ItemError("ErrorFolderSavePropertyError", "Folder property could not be saved.")
                if any(f.display_name.lower() == name.lower() for f in mailbox.children(parent.folder_id)):
                    raise ItemError("ErrorFolderExists", "A folder with the specified name already exists.")
            except ItemError as error:
                messages.append(failure("CreateFolder", error, element("m:Folders")))
                continue
            folder = Folder(
                new_id(b"\x01F"), new_id(b"\x01C")[:40], parent.folder_id, name, folder_class or "IPF.Note"
            )
            mailbox.folders[folder.folder_id] = folder
        created = element(
            "t:Folder", None, element("t:FolderId", {"Id": folder.folder_id, "ChangeKey": folder.change_key})
        )
        messages.append(success("CreateFolder", element("m:Folders", None, created)))
    return messages

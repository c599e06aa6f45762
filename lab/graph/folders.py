"""Mail folders: get (by id or well-known name), list, list children, create a child.

Pages: https://learn.microsoft.com/en-us/graph/api/mailfolder-get,
https://learn.microsoft.com/en-us/graph/api/user-list-mailfolders,
https://learn.microsoft.com/en-us/graph/api/mailfolder-list-childfolders,
https://learn.microsoft.com/en-us/graph/api/mailfolder-post-childfolders,
https://learn.microsoft.com/en-us/graph/api/user-post-mailfolders.
"""

from __future__ import annotations

from functools import partial
from operator import itemgetter
from typing import Any

from lab.graph.context import Call, Reply, Tenant
from lab.graph.errors import GraphError, bad_request, not_found
from lab.graph.mailbox import Folder, Mailbox
from lab.graph.odata import evaluate
from lab.graph.query import next_link, options
from lab.graph.resources import FOLDER_PROPERTIES, folder_json

READ_ROLES = ("Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite")
WRITE_ROLES = ("Mail.ReadWrite",)
_LIST_OPTIONS = ("$select", "$top", "$skip", "$filter", "$count", "$orderby", "$expand")
_CREATE_FIELDS = frozenset({"displayName", "isHidden", "@odata.type"})
#: childFolders and mailFolders page 10 folders by default (the pages' "use $top" notes).
DEFAULT_PAGE = 10


def find_folder(mailbox: Mailbox, ref: str) -> Folder:
    folder = mailbox.folder(ref)
    if folder is None:
        raise not_found(f"folder {ref}")
    return folder


def get_folder(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/mailfolder-get"""
    call.require(*READ_ROLES)
    assert call.mailbox is not None
    opts = options(call, ("$select",), FOLDER_PROPERTIES, type_name="microsoft.graph.mailFolder")
    with call.mailbox.lock:
        folder = find_folder(call.mailbox, params["folder"])
        body = folder_json(call.mailbox, folder, opts.select)
    return Reply(
        200, {"@odata.context": call.context_url(f"users('{params['user']}')/mailFolders/$entity"), **body}
    )


def list_root_folders(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/user-list-mailfolders"""
    assert call.mailbox is not None
    return _list_children(call, call.mailbox.root().id, f"users('{params['user']}')/mailFolders")


def list_child_folders(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/mailfolder-list-childfolders"""
    assert call.mailbox is not None
    with call.mailbox.lock:
        parent = find_folder(call.mailbox, params["folder"])
    return _list_children(
        call, parent.id, f"users('{params['user']}')/mailFolders('{params['folder']}')/childFolders"
    )


def _list_children(call: Call, parent_id: str, context: str) -> Reply:
    call.require(*READ_ROLES)
    mailbox = call.mailbox
    assert mailbox is not None
    opts = options(
        call,
        _LIST_OPTIONS,
        FOLDER_PROPERTIES,
        type_name="microsoft.graph.mailFolder",
        extra=("includeHiddenFolders",),
    )
    if opts.expand:
        raise bad_request("$expand is not supported on mail folders by the emulator.")
    with mailbox.lock:
        children = [
            f
            for f in mailbox.children(parent_id)
            if not f.hidden or opts.extra.get("includehiddenfolders") == "true"
        ]
        rows = [folder_json(mailbox, f) for f in children]
    if opts.filter is not None:
        node = opts.filter
        rows = [r for r in rows if evaluate(node, partial(_folder_field, r))]
    for name, descending in reversed(opts.orderby):
        if name not in FOLDER_PROPERTIES:
            raise bad_request(
                f"Could not find a property named '{name}' on type 'microsoft.graph.mailFolder'."
            )
        rows.sort(key=itemgetter(name), reverse=descending)
    top = opts.top if opts.top is not None else DEFAULT_PAGE
    page = rows[opts.skip : opts.skip + top]
    if opts.select:
        page = [{"id": r["id"], **{k: r[k] for k in opts.select}} for r in page]
    body: dict[str, Any] = {"@odata.context": call.context_url(context)}
    if opts.count:
        body["@odata.count"] = len(rows)
    body["value"] = page
    if opts.skip + top < len(rows):
        body["@odata.nextLink"] = next_link(call, opts.skip + top, top)
    return Reply(200, body)


def _folder_field(row: dict[str, Any], path: Any) -> Any:
    from lab.graph.odata import ODataError

    if len(path) == 1 and path[0] in row:
        return row[path[0]]
    raise ODataError(f"Invalid filter clause: '{'/'.join(path)}' is not a property of mailFolder.")


def create_root_folder(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/user-post-mailfolders"""
    assert call.mailbox is not None
    return _create(call, call.mailbox.root().id, params)


def create_child_folder(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/mailfolder-post-childfolders"""
    assert call.mailbox is not None
    with call.mailbox.lock:
        parent = find_folder(call.mailbox, params["folder"])
    return _create(call, parent.id, params)


def _create(call: Call, parent_id: str, params: dict[str, str]) -> Reply:
    call.require(*WRITE_ROLES)
    options(call, ())
    body = call.json()
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        raise unknown_property(sorted(unknown)[0], "microsoft.graph.mailFolder")
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise bad_request(
            "The folder name can't be empty.", "ErrorInvalidFolderName"
        )  # docs silent on the code
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        # Exchange compares folder names case-insensitively among siblings.
        if any(f.name.lower() == name.lower() for f in mailbox.children(parent_id)):
            raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        folder = mailbox.add_folder(parent_id, name)
        folder.hidden = bool(body.get("isHidden", False))
        shown = folder_json(mailbox, folder)
    context = call.context_url(f"users('{params['user']}')/mailFolders/$entity")
    return Reply(201, {"@odata.context": context, **shown})


def unknown_property(name: str, type_name: str) -> GraphError:
    """What Graph answers for a body property its type doesn't have."""
    return GraphError(
        400,
        "RequestBodyRead",
        f"The property '{name}' does not exist on type '{type_name}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
        unknown=True,
    )

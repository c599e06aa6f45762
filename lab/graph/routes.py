"""Which handler answers which path. Path segments compare case-insensitively, as Graph's do."""

from __future__ import annotations

from dataclasses import dataclass

from lab.graph import attachments, batch, directory, folders, messages
from lab.graph.context import Handler


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    handler: Handler
    #: "mail": /users/{user}/... of a mailbox (resolved, scoped and throttled); "directory": no mailbox.
    kind: str = "mail"
    versions: tuple[str, ...] = ("v1.0", "beta")


def _p(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/"))


ROUTES: tuple[Route, ...] = (
    Route("GET", _p("users/{user}"), directory.get_user, "directory"),
    Route("GET", _p("users/{user}/mailboxSettings"), directory.get_mailbox_settings),
    Route("GET", _p("users/{user}/mailFolders"), folders.list_root_folders),
    Route("POST", _p("users/{user}/mailFolders"), folders.create_root_folder),
    Route("GET", _p("users/{user}/mailFolders/{folder}"), folders.get_folder),
    Route("GET", _p("users/{user}/mailFolders/{folder}/childFolders"), folders.list_child_folders),
    Route("POST", _p("users/{user}/mailFolders/{folder}/childFolders"), folders.create_child_folder),
    Route(
        "POST", _p("users/{user}/mailFolders/{folder}/importMime"), messages.import_mime, versions=("beta",)
    ),
    Route("GET", _p("users/{user}/mailFolders/{folder}/messages"), messages.list_in_folder),
    Route("POST", _p("users/{user}/mailFolders/{folder}/messages"), messages.create_in_folder),
    Route("GET", _p("users/{user}/messages"), messages.list_all),
    Route("POST", _p("users/{user}/messages"), messages.create_in_drafts),
    Route("GET", _p("users/{user}/messages/{message}"), messages.get_message),
    Route("PATCH", _p("users/{user}/messages/{message}"), messages.update_message),
    Route("DELETE", _p("users/{user}/messages/{message}"), messages.delete_message),
    Route("GET", _p("users/{user}/messages/{message}/$value"), messages.get_mime),
    Route("POST", _p("users/{user}/messages/{message}/move"), messages.move_message),
    Route("GET", _p("users/{user}/messages/{message}/attachments"), attachments.list_attachments),
    Route("POST", _p("users/{user}/messages/{message}/attachments"), attachments.add_attachment),
    Route(
        "POST",
        _p("users/{user}/messages/{message}/attachments/createUploadSession"),
        attachments.create_upload_session,
    ),
    Route("GET", _p("users/{user}/messages/{message}/attachments/{attachment}"), attachments.get_attachment),
    Route("GET", _p("domains/{domain}"), directory.get_domain, "directory"),
    Route(
        "GET",
        _p("domains/{domain}/serviceConfigurationRecords"),
        directory.service_configuration_records,
        "directory",
    ),
    Route("POST", _p("$batch"), batch.run_batch, "batch"),
)


def normalise(segments: list[str]) -> list[str]:
    """users/{u}/mailFolders/{f}/messages/{m}/... is users/{u}/messages/{m}/...; a folder reached
    through childFolders/{c} is mailFolders/{c} (Graph addresses both ways)."""
    out = list(segments)
    while len(out) >= 6 and out[2].lower() == "mailfolders" and out[4].lower() == "childfolders":
        out = [*out[:3], *out[5:]]
    if len(out) >= 6 and out[2].lower() == "mailfolders" and out[4].lower() == "messages":
        out = [*out[:2], *out[4:]]
    return out


def match(method: str, segments: list[str]) -> tuple[Route | None, dict[str, str], bool]:
    """(route, parameters, path_known): path_known is True when the path exists for another method."""
    path_known = False
    for route in ROUTES:
        if len(route.pattern) != len(segments):
            continue
        params: dict[str, str] = {}
        for expected, actual in zip(route.pattern, segments, strict=True):
            if expected.startswith("{"):
                if not actual:
                    break
                params[expected[1:-1]] = actual
            elif expected.lower() != actual.lower():
                break
        else:
            if route.method == method:
                return route, params, True
            path_known = True
    return None, {}, path_known

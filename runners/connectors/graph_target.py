"""Microsoft 365 importer over Microsoft Graph: ``TargetSession`` for ``[target] type = "graph"``.

Items are created as non-draft messages by one of two routes (``docs/graph.md`` says how they
differ):

* ``importMime`` (beta, permission Mail-Advanced.ReadWrite.All): the full MIME in one POST, then ONE
  PATCH with our key, the delivery time, read state, flag and categories. A PATCH that fails is
  recorded as the message's failure and the half-made item removed, so a rerun makes it again.
* ``json`` (Mail.ReadWrite): a message built from the MIME with every property set at creation
  (``graph_message``), attachments inline up to Graph's 4 MB, larger ones after it (small ones by
  POST, from 3 MB on by upload session) while the item is marked pending.

"auto" uses importMime where the tenant has it and the token carries its role, else json; which
route made each item is stored on it (``KeptItem.route``).

Every item carries our key in a named extended property, so an item whose create outcome was lost
(a dropped connection, a 5xx, a crash) is found with ``$filter`` instead of made twice.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx

from runners.adapters import GRAPH_TARGET
from runners.connectors.base import TargetSession
from runners.connectors.exchange_props import props_for
from runners.connectors.graph_batch import BatchCreates, Create
from runners.connectors.graph_errors import GraphFailure, error_for, failure_of
from runners.connectors.graph_folders import GraphFolders
from runners.connectors.graph_http import GraphHttp
from runners.connectors.graph_kept import KEPT_EXPAND, KEPT_SELECT, header_value, kept_item, property_value
from runners.connectors.graph_message import (
    FINISHED,
    INLINE_BUDGET,
    KEY_PROPERTY,
    PENDING_PROPERTY,
    Attachment,
    JsonMessage,
    json_message,
    state_fields,
    state_patch,
)
from runners.connectors.graph_pace import graph_pace
from runners.connectors.graph_token import token_source
from runners.connectors.graph_upload import upload_attachment
from runners.connectors.keyed_recovery import KeyedRecovery
from runners.errors import CommandError, ConnectionLost, MailboxFatal, ProtocolError
from runners.kept import ImapState, KeptItem
from runners.model import AppendItem, AppendOutcome, ListedItem, TargetLayout
from runners.plan.model import Endpoint, MailboxEntry

IMPORT_MIME = "importMime"
JSON = "json"
WRITE_PERMISSION = "Mail.ReadWrite"
IMPORT_PERMISSION = "Mail-Advanced.ReadWrite.All"
#: Creates whose answer was lost, tried again (after a look-up by key) before the message fails.
CREATE_ATTEMPTS = 3
#: Answers after which a create may or may not have happened (a 507 quota refusal is an answer).
UNKNOWN_OUTCOME = frozenset({500, 502, 503, 504})
#: importMime can't set a property, so the key rides in a header until the PATCH puts it in one.
KEY_HEADER_NAME = "X-Cutover-Key"
KEY_HEADER = KEY_HEADER_NAME.encode("ascii") + b": "
#: Newest items read, per page and in pages, looking for unfinished importMime items.
UNKEYED_PAGE = 25
UNKEYED_PAGES = 8
#: A JSON message from this size on is sent alone: a batch of such would hold only a few anyway.
BATCH_ALONE = 1024 * 1024

#: Tenants found without importMime in this process (auto route): no need to ask again.
_NO_IMPORT_MIME: set[str] = set()
_ROUTE_LOCK = threading.Lock()


def open_session(endpoint: Endpoint, entry: MailboxEntry) -> TargetSession:
    """The target session for one mailbox of a plan (``runners.adapters`` names this opener)."""
    return GraphTarget(endpoint, entry.target)


class GraphTarget:
    """``TargetSession`` for one mailbox; folders are wire names, items Graph's immutable ids."""

    capabilities = GRAPH_TARGET

    def __init__(self, endpoint: Endpoint, user: str) -> None:
        assert endpoint.graph is not None  # the plan loader sets it for type = "graph"
        self.options = endpoint.graph
        self.user = user
        self.tokens = token_source(
            self.options, ca_file=endpoint.ca_file, tls_verify=endpoint.tls_verify, timeout=endpoint.timeout
        )
        self.pace = graph_pace(user, self.options)
        self.http = GraphHttp(endpoint, self.tokens, self.pace)
        self.server = f"graph://{endpoint.host}:{endpoint.port}/{user}"
        self.http.server = self.server
        self.v1 = f"/v1.0/users/{quote(user, safe='@')}"
        self.beta = f"/beta/users/{quote(user, safe='@')}"
        self.folders = GraphFolders(self.http, self.v1)
        self.recovery = KeyedRecovery(self)
        self._pool = ThreadPoolExecutor(max_workers=self.options.pace_concurrency, thread_name_prefix="graph")

    # -- folders -------------------------------------------------------------------------------

    def layout(self) -> TargetLayout:
        return self.folders.layout()

    def existing_folders(self) -> set[str]:
        return set(self.folders.wire_names())

    def create_folder(self, folder: str) -> list[str]:
        return self.folders.create(folder)

    def message_counts(self, folders: Sequence[str]) -> dict[str, int | Exception]:
        out: dict[str, int | Exception] = {}
        for wire in folders:
            try:
                folder_id = self.folders.require(wire).id
                operation = f"count {wire}"
                response = self.http.send("GET", self._folder_url(folder_id), operation,
                                          params={"$select": "totalItemCount"})  # fmt: skip
                out[wire] = int(
                    self.http.check(response, operation, WRITE_PERMISSION).json()["totalItemCount"]
                )
            except ProtocolError as exc:
                out[wire] = exc
        return out

    def _folder_url(self, folder_id: str) -> str:
        return f"{self.v1}/mailFolders/{quote(folder_id, safe='')}"

    def _message_url(self, item_id: str) -> str:
        return f"{self.v1}/messages/{quote(item_id, safe='')}"

    # -- append --------------------------------------------------------------------------------

    def route(self) -> str:
        """The route for the next message: the plan's, or for "auto" importMime unless the tenant
        lacks it or the token lacks its role."""
        if self.options.route == "json":
            return JSON
        if self.options.route == "import-mime":
            return IMPORT_MIME
        if self.options.authority in _NO_IMPORT_MIME or IMPORT_PERMISSION not in self.tokens.token().roles:
            return JSON
        return IMPORT_MIME

    def append(
        self, folder: str, items: Sequence[AppendItem], keep_sending: Callable[[], None] = lambda: None
    ) -> list[AppendOutcome]:
        """Up to ``pace_concurrency`` creates at once (the mailbox's budget allows 4 in flight);
        once one says the mailbox is finished (quota, permission), the rest are not sent. Each create
        asks ``keep_sending`` first (``TargetSession.append``)."""
        if not items:
            return []
        folder_id = self.folders.require(folder).id
        if self.route() == JSON:
            return self._append_batched(folder, folder_id, items, keep_sending)
        refused: list[AppendOutcome] = []  # the first answer that finished the mailbox

        def one(item: AppendItem) -> AppendOutcome:
            keep_sending()
            if refused:
                first = refused[0]
                return AppendOutcome(
                    error=f"not sent: {first.error}", code=first.code, fatal_for_mailbox=True
                )
            outcome = self._append_one(folder, folder_id, item)
            if outcome.fatal_for_mailbox and not refused:
                refused.append(outcome)
            return outcome

        return list(self._pool.map(one, items))

    def _append_batched(
        self, folder: str, folder_id: str, items: Sequence[AppendItem], keep_sending: Callable[[], None]
    ) -> list[AppendOutcome]:
        """The JSON route through ``$batch`` (``graph_batch``); a message whose attachments don't
        all fit in its create, or too large to share a batch, is made alone as before."""
        operation = f"create message in {folder} ($batch)"
        batch = BatchCreates(
            self.http, "v1.0", f"{self.v1.removeprefix('/v1.0')}/mailFolders/{quote(folder_id, safe='')}/messages",
            lambda keys: self.find_in_folder(folder_id, keys),
            lambda failure: self._refused(operation, failure, WRITE_PERMISSION), operation,
        )  # fmt: skip
        alone: dict[int, AppendOutcome] = {}
        fatal: list[AppendOutcome] = []  # a message made alone that finished the mailbox

        def drawn() -> Iterator[Create]:
            """Each message encoded when the batch being filled needs it (while the previous one
            is in flight); one that can't share a batch is made alone here."""
            for n, item in enumerate(items):
                if fatal:
                    return
                keep_sending()
                props = props_for(item)
                built = json_message(item.body, props)
                if built.later or built.size > BATCH_ALONE:
                    alone[n] = self._append_one(folder, folder_id, item, built)
                    if alone[n].fatal_for_mailbox:
                        fatal.append(alone[n])
                else:
                    yield Create(props.key, built.body, index=n)

        try:
            made = {c.index: c.outcome for c in batch.run(drawn(), self._pool)}
        except MailboxFatal as exc:
            return [AppendOutcome(error=exc.server_text, code=exc.code, fatal_for_mailbox=True)] * len(items)
        first = fatal[0] if fatal else batch.fatal
        return [
            alone.get(n)
            or made.get(n)
            or AppendOutcome(
                error=f"not sent: {first.error}" if first else "not sent",
                code=first.code if first else None,
                fatal_for_mailbox=first is not None,
            )
            for n in range(len(items))
        ]

    def _append_one(
        self, folder: str, folder_id: str, item: AppendItem, built: JsonMessage | None = None
    ) -> AppendOutcome:
        try:
            # importMime always makes a sent item: a source draft is made by JSON, which can keep it one.
            route = self.route()
            if route == IMPORT_MIME and "\\draft" not in {f.lower() for f in item.flags}:
                outcome = self._import_mime(folder, folder_id, item)
                if outcome is not None:
                    return outcome
            return self._create_json(folder, folder_id, item, built)
        except MailboxFatal as exc:
            return AppendOutcome(error=exc.server_text, code=exc.code, fatal_for_mailbox=True)
        except CommandError as exc:
            if exc.retryable:
                raise  # throttled or unavailable past every retry: the engine retries the batch
            return AppendOutcome(error=exc.server_text, code=exc.code)

    def _import_mime(self, folder: str, folder_id: str, item: AppendItem) -> AppendOutcome | None:
        """importMime then one PATCH; None when the JSON route must make it instead (the tenant
        has no importMime, or the message's base64 would take the request past 4 MB)."""
        props = props_for(item)
        body = base64.b64encode(KEY_HEADER + props.key.encode("ascii") + b"\r\n" + item.body)
        if len(body) > INLINE_BUDGET:
            return None  # JSON can send its attachments apart, through upload sessions
        url = f"{self.beta}/mailFolders/{quote(folder_id, safe='')}/importMime"
        operation = f"importMime {folder}"

        def send() -> httpx.Response:
            return self.http.send("POST", url, operation, content=body, headers={"Content-Type": "text/plain"},
                                  creates=True)  # fmt: skip

        response = self._create(
            operation, send, lambda: self._find_unkeyed(folder_id, {props.key}).get(props.key)
        )
        if isinstance(response, str):
            item_id = response  # made before its answer was lost: it still needs its PATCH
        elif not response.is_success:
            failure = failure_of(response)
            if self.options.route == "auto" and _lacks_import_mime(failure):
                with _ROUTE_LOCK:
                    _NO_IMPORT_MIME.add(self.options.authority)
                return None
            return self._refused(operation, failure, IMPORT_PERMISSION)
        else:
            item_id = str(response.json()["id"])
        patch = f"PATCH {folder} (key, time, state after importMime)"
        answer = self._send_quietly(
            "PATCH", self._message_url(item_id), patch, state_patch(props, IMPORT_MIME)
        )
        if answer is None or not answer.is_success:
            why = "the connection broke" if answer is None else failure_of(answer).text
            return self._undo(item_id, f"{patch} failed: {why}", answer)
        return AppendOutcome(item_id=item_id)

    def _create_json(
        self, folder: str, folder_id: str, item: AppendItem, built: JsonMessage | None = None
    ) -> AppendOutcome:
        props = props_for(item)
        built = built or json_message(item.body, props)
        url = f"{self.v1}/mailFolders/{quote(folder_id, safe='')}/messages"
        operation = f"create message in {folder}"

        def send() -> httpx.Response:
            return self.http.send("POST", url, operation, content=built.parts,
                                  headers={"Content-Type": "application/json"}, creates=True)  # fmt: skip

        response = self._create(
            operation, send, lambda: self.find_in_folder(folder_id, [props.key]).get(props.key)
        )
        if isinstance(response, str):
            return AppendOutcome(item_id=response)
        if not response.is_success:
            return self._refused(operation, failure_of(response), WRITE_PERMISSION)
        item_id = str(response.json()["id"])
        if built.later:
            return self._attach_later(item_id, built.later)
        return AppendOutcome(item_id=item_id)

    def _attach_later(self, item_id: str, attachments: list[Attachment]) -> AppendOutcome:
        """The attachments that didn't fit in the create, then the pending mark cleared; on any
        failure the unfinished item is removed and the message fails with the server's words."""
        for attachment in attachments:
            try:
                upload_attachment(self.http, self._message_url(item_id), attachment)
            except (CommandError, ConnectionLost) as exc:
                undone = self._undo(item_id, f"attachment {attachment.name!r}: {exc.server_text}", None)
                if isinstance(exc, MailboxFatal):
                    undone.code, undone.fatal_for_mailbox = exc.code, True
                return undone
        operation = "PATCH (attachments done)"
        answer = self._send_quietly("PATCH", self._message_url(item_id), operation, FINISHED)
        if answer is None or not answer.is_success:
            why = "the connection broke" if answer is None else failure_of(answer).text
            return self._undo(item_id, f"{operation} failed: {why}", answer)
        return AppendOutcome(item_id=item_id)

    def _create(
        self, operation: str, send: Callable[[], httpx.Response], lookup: Callable[[], str | None]
    ) -> httpx.Response | str:
        """Send a create; when its outcome is unknown (dropped, 5xx), ``lookup`` the item before
        sending it again. Returns Graph's answer, or the id of the item found."""
        last: ProtocolError | None = None
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                response = send()
            except ConnectionLost as exc:
                last = exc
            else:
                if response.status_code not in UNKNOWN_OUTCOME:
                    return response
                failure = failure_of(response)
                last = CommandError(self.server, operation, failure.text, failure.code or str(response.status_code),
                                    str(response.status_code), retryable=True)  # fmt: skip
                self.http.wait_as_told(response, attempt, operation)
            found = lookup()
            if found is not None:
                return found
        assert last is not None
        raise last

    def _refused(self, operation: str, failure: GraphFailure, permission: str) -> AppendOutcome:
        """A create Graph refused: this message (too large, malformed) or the whole mailbox."""
        if failure.too_large:
            return AppendOutcome(error=f"{operation}: {failure.text}", code="TOOBIG")
        error = error_for(self.server, operation, failure, permission)
        if isinstance(error, MailboxFatal):
            return AppendOutcome(error=error.server_text, code=error.code, fatal_for_mailbox=True)
        if error.retryable or not isinstance(error, CommandError):
            raise error  # 401 (final) and throttling past every retry are not this message's fault
        return AppendOutcome(error=f"{operation}: {failure.text}", code=error.code)

    def _send_quietly(self, method: str, url: str, operation: str, body: bytes) -> httpx.Response | None:
        try:
            return self.http.send(
                method, url, operation, content=body, headers={"Content-Type": "application/json"}
            )
        except ConnectionLost:
            return None

    def _undo(self, item_id: str, why: str, answer: httpx.Response | None) -> AppendOutcome:
        """Remove an item we could not finish, so that a rerun makes it whole; say what happened."""
        gone = self._send_quietly("DELETE", self._message_url(item_id), "DELETE unfinished item", b"")
        if gone is None or not (gone.is_success or gone.status_code == 404):
            left = "connection broke" if gone is None else failure_of(gone).text
            why += f"; the unfinished item {item_id} could not be removed ({left}): delete it by hand"
        fatal = answer is not None and (failure_of(answer).over_quota or answer.status_code == 403)
        return AppendOutcome(error=why, code="UNFINISHED", fatal_for_mailbox=fatal)

    # -- recovery: find items by our key ----------------------------------------------------------

    def find_by_keys(self, folder: str, keys: Sequence[str]) -> dict[str, str]:
        """``KeyedTarget``: the items of ``folder`` carrying each key (one $filter per key: the
        property isn't indexed, and only uncertain items are asked for). An importMime item a
        crash left without its PATCH is removed, so that it is made again whole."""
        folder_id = self.folders.require(folder).id
        found = self.find_in_folder(folder_id, keys)
        missing = set(keys) - set(found)
        if missing:
            for item_id in self._find_unkeyed(folder_id, missing).values():
                self._send_quietly("DELETE", self._message_url(item_id), "DELETE unfinished item", b"")
        return found

    def find_in_folder(self, folder_id: str, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for key in keys:
            operation = "find by key"
            params = {
                "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_PROPERTY}' and ep/value eq '{key}')",
                "$select": "id",
                "$expand": f"singleValueExtendedProperties($filter=id eq '{PENDING_PROPERTY}')",
            }
            for data in self.http.pages(
                f"{self._folder_url(folder_id)}/messages", operation, WRITE_PERMISSION, params
            ):
                item_id = str(data["id"])
                if property_value(data, PENDING_PROPERTY):
                    # A crash while its attachments went on: remove it, so it is made again whole.
                    self._send_quietly("DELETE", self._message_url(item_id), "DELETE unfinished item", b"")
                    continue
                found.setdefault(key, item_id)
        return found

    def _find_unkeyed(self, folder_id: str, keys: set[str]) -> dict[str, str]:
        """Items importMime made whose PATCH never came (a lost answer, a crash): they carry no key
        property yet, only our ``X-Cutover-Key`` header. The newest items of the folder are read
        until a whole page has keys (the unfinished ones are among the last made)."""
        params = {
            "$orderby": "createdDateTime desc",
            "$select": "id,internetMessageHeaders",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{KEY_PROPERTY}')",
            "$top": str(UNKEYED_PAGE),
        }
        found: dict[str, str] = {}
        url: str | None = f"{self._folder_url(folder_id)}/messages"
        query: dict[str, str] | None = params
        for _ in range(UNKEYED_PAGES):
            if url is None:
                break
            operation = "find unfinished importMime items"
            data = self.http.check(
                self.http.send("GET", url, operation, params=query), operation, WRITE_PERMISSION
            ).json()
            unkeyed = 0
            for row in data.get("value", []):
                if property_value(row, KEY_PROPERTY):
                    continue
                unkeyed += 1
                key = header_value(row, KEY_HEADER_NAME)
                if key in keys:
                    found.setdefault(key, str(row["id"]))
            if not unkeyed:
                break
            url, query = data.get("@odata.nextLink"), None
        return found

    # -- verification and flag sync -------------------------------------------------------------

    def kept_items(self, folder: str, *, deep: bool) -> dict[str, KeptItem]:
        folder_id = self.folders.require(folder).id
        params = {"$select": KEPT_SELECT, "$expand": KEPT_EXPAND, "$top": "100"}
        out: dict[str, KeptItem] = {}
        for data in self.http.pages(
            f"{self._folder_url(folder_id)}/messages", f"list {folder}", WRITE_PERMISSION, params
        ):
            item_id = str(data["id"])
            mime = self._mime(item_id) if deep else None
            out[item_id] = kept_item(data, mime)
        return out

    def _mime(self, item_id: str) -> bytes:
        operation = "GET message $value"
        response = self.http.send("GET", f"{self._message_url(item_id)}/$value", operation)
        return self.http.check(response, operation, WRITE_PERMISSION).content

    def digests(self, folder: str) -> Iterator[tuple[str, int, bytes]]:
        raise NotImplementedError("Graph re-renders messages: no byte digest to compare (keeps_bytes=False)")

    def list_items(self, folder: str) -> dict[str, ListedItem]:
        """Never asked (``keeps_bytes`` is false): sizes and received times are in ``kept_items``."""
        return {}

    def set_flags(self, folder: str, changes: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        """Read state, flag and categories follow the source: one PATCH per item."""

        def one(change: tuple[str, tuple[str, ...]]) -> None:
            item_id, flags = change
            operation = f"PATCH {folder} flags"
            response = self.http.send("PATCH", self._message_url(item_id), operation,
                                      json=state_fields(ImapState.from_flags(flags)))  # fmt: skip
            self.http.check(response, operation, WRITE_PERMISSION)

        list(self._pool.map(one, changes))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.http.close()


def _lacks_import_mime(failure: GraphFailure) -> bool:
    """The tenant has no importMime: Graph's answer for a path segment it doesn't know."""
    text = failure.message.lower()
    return failure.status in (400, 404) and ("segment" in text and "importmime" in text)

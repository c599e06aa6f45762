"""The Exchange Server target over EWS: ``runners.connectors.base.TargetSession`` for one mailbox.

Folders are the folder plan's names (``runners.connectors.ews_folders``), items are EWS ItemIds.
Recovery is by key (``KeyedRecovery``): every item carries the ledger's key in our named property,
and an item whose CreateItem outcome was lost is found again with FindItem before anything is
created twice. Exchange re-renders MIME, so the target never claims to keep bytes: ``cutover
verify`` compares ``kept_items`` (docs/ews.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

from exchangelib.errors import ErrorServerBusy, EWSError

from runners.adapters import EWS_TARGET
from runners.connectors.base import TargetSession
from runners.connectors.credentials import user_password
from runners.connectors.ews_errors import (
    HTTP_413,
    MAILBOX_CODES,
    MAILBOX_FULL_CODES,
    code_of,
    protocol_error,
    words,
)
from runners.connectors.ews_folders import FolderNode, FolderTree
from runners.connectors.ews_items import (
    KEY,
    KEYS_PER_FIND,
    MIME_PER_GET,
    REQUEST_OVERHEAD,
    chunks,
    create_request,
    created_id,
    encoded_size,
    extended_values,
    find_request,
    item_id,
    kept_of,
    mime_of,
    mime_request,
    page_items,
)
from runners.connectors.ews_session import open_account
from runners.connectors.ews_wire import Element, HttpRefusal, Wire, m, mn, t, tn
from runners.connectors.keyed_recovery import KeyedRecovery
from runners.errors import AuthError, CommandError, ProtocolError
from runners.kept import KeptItem
from runners.model import AppendItem, AppendOutcome, ListedItem, TargetCapabilities, TargetLayout
from runners.pacing import Budget, pace_for
from runners.plan.model import Endpoint, MailboxEntry

#: Busy answers to the same items of one batch before the engine is told (it retries later).
BUSY_ROUNDS = 8


def open_session(endpoint: Endpoint, entry: MailboxEntry) -> TargetSession:
    """The target session for one mailbox of a plan (``runners.adapters`` names this opener)."""
    options = endpoint.ews
    assert options is not None and endpoint.host is not None
    password = user_password(endpoint, options.service_account, None)
    if password is None:  # never: an ews target always has auth = "password" underneath
        raise AuthError(endpoint.address, "EWS login", "no password is configured for the service account")
    url = options.service_url(endpoint.host, endpoint.port)
    if options.autodiscover and not options.url:
        from runners.connectors.ews_discover import discover_url  # only when the plan asks for it

        url = discover_url(endpoint, entry.target, password)
    account = open_account(endpoint, url, entry.target, password)
    host = endpoint.host
    pace = pace_for(f"ews:{options.service_account}@{host}", Budget(concurrency=options.max_concurrency))
    return EwsTarget(Wire(account, pace), endpoint, entry.target)


class EwsTarget:
    """One mailbox on Exchange Server, written through EWS."""

    def __init__(self, wire: Wire, endpoint: Endpoint, mailbox: str) -> None:
        options = endpoint.ews
        assert options is not None
        self.wire = wire
        self.mailbox = mailbox
        self.account_name = options.service_account
        self.server = endpoint.address
        self.request_limit = options.request_limit_bytes
        self.batch_items = options.batch_items
        # The plan's batch_items is the cap (EWS_TARGET's is its default): a plan may raise it.
        self.capabilities: TargetCapabilities = dataclasses.replace(
            EWS_TARGET,
            batch_messages=options.batch_items,
            batch_bytes=max(1, (options.request_limit_bytes - REQUEST_OVERHEAD) * 3 // 4),
        )
        self.recovery = KeyedRecovery(self)
        self.tree = FolderTree(wire, mailbox)

    # -- one request, our errors ------------------------------------------------------------------

    def _call(
        self, name: str, payload: Element, what: str, *, upload_bytes: int = 0
    ) -> list[Element | Exception]:
        try:
            return self.wire.call(name, payload, upload_bytes=upload_bytes)
        except (EWSError, OSError, HttpRefusal) as exc:
            raise protocol_error(exc, self.server, f"{what} ({self.mailbox})", self.account_name) from None

    def _checked(self, name: str, payload: Element, what: str) -> list[Element]:
        """A request whose every answer must be a success (folders, finds): the first error is raised."""
        out: list[Element] = []
        for answer in self._call(name, payload, what):
            if isinstance(answer, Exception):
                raise protocol_error(answer, self.server, f"{what} ({self.mailbox})", self.account_name)
            out.append(answer)
        return out

    def _tree(self) -> FolderTree:
        if self.tree.root is None:
            try:
                self.tree.load()
            except (EWSError, OSError, HttpRefusal) as exc:
                raise protocol_error(
                    exc, self.server, f"GetFolder ({self.mailbox})", self.account_name
                ) from None
        return self.tree

    def _folder(self, folder: str) -> FolderNode:
        node = self._tree().find(folder)
        if node is None:  # created since the tree was read (by another session): read it again
            self.tree.root = None
            node = self._tree().find(folder)
        if node is None:
            raise CommandError(
                self.server, f"open folder {folder}", "no such folder in the mailbox", status="ERROR"
            )
        return node

    # -- folders ---------------------------------------------------------------------------------

    def layout(self) -> TargetLayout:
        tree = self._tree()
        return TargetLayout(
            "/", "", tree.special_names(), reserved=dict(tree.reserved), case_insensitive=True
        )

    def existing_folders(self) -> set[str]:
        return self._tree().existing()

    def create_folder(self, folder: str) -> list[str]:
        tree = self._tree()
        try:
            return tree.create(folder)
        except (EWSError, OSError, HttpRefusal) as exc:
            raise protocol_error(
                exc, self.server, f"CreateFolder {folder} ({self.mailbox})", self.account_name
            ) from None

    def message_counts(self, folders: Sequence[str]) -> dict[str, int | Exception]:
        tree = self._tree()
        nodes = {name: tree.find(name) for name in folders}
        known = [(name, node) for name, node in nodes.items() if node is not None]
        out: dict[str, int | Exception] = {
            name: CommandError(self.server, f"count {name}", "no such folder in the mailbox", status="ERROR")
            for name, node in nodes.items()
            if node is None
        }
        if known:
            try:
                counts = tree.counts([node.id for _, node in known])
            except (EWSError, OSError, HttpRefusal) as exc:
                error = protocol_error(exc, self.server, f"GetFolder ({self.mailbox})", self.account_name)
                return out | {name: error for name, _ in known}
            for (name, _), count in zip(known, counts, strict=True):
                out[name] = count
        return out

    # -- append ----------------------------------------------------------------------------------

    def append(
        self, folder: str, items: Sequence[AppendItem], keep_sending: Callable[[], None] = lambda: None
    ) -> list[AppendOutcome]:
        if not items:
            return []
        target = t("FolderId", Id=self._folder(folder).id)
        outcomes: dict[int, AppendOutcome] = {}
        positions = {id(item): n for n, item in enumerate(items)}
        full: AppendOutcome | None = None
        for n, run in enumerate(chunks(items, self.batch_items, self.request_limit)):
            if full is not None:
                break
            if n:  # each CreateItem after the first: the caller may stop here (``TargetSession.append``)
                keep_sending()
            for item, outcome in self._create(folder, target, run):
                outcomes[positions[id(item)]] = outcome
                if outcome.fatal_for_mailbox and full is None:
                    full = outcome
        if full is not None:  # nothing more goes in: the rest are refused with the same words
            for n in range(len(items)):
                outcomes.setdefault(n, dataclasses.replace(full))
        return [outcomes[n] for n in range(len(items))]

    def _create(
        self, folder: str, target: Element, run: list[AppendItem]
    ) -> list[tuple[AppendItem, AppendOutcome]]:
        """One CreateItem for ``run`` (resending what the server was too busy for, splitting what it
        found too big), an outcome per item."""
        done: list[tuple[AppendItem, AppendOutcome]] = []
        todo = run
        for _ in range(BUSY_ROUNDS):
            if len(todo) == 1 and encoded_size(todo[0]) + REQUEST_OVERHEAD > self.request_limit:
                return [*done, (todo[0], self._too_big(todo[0]))]
            size = REQUEST_OVERHEAD + sum(encoded_size(i) for i in todo)
            try:
                payload, fill = create_request(target, todo)
                answers = self.wire.call("CreateItem", payload, upload_bytes=size, fill=fill)
            except (EWSError, OSError, HttpRefusal) as exc:
                if code_of(exc) == HTTP_413:
                    return [*done, *self._split(folder, target, todo, exc)]
                raise protocol_error(
                    exc, self.server, f"CreateItem {folder} ({self.mailbox})", self.account_name
                ) from None
            busy: list[AppendItem] = []
            for item, answer in zip(todo, answers, strict=False):
                if isinstance(answer, ErrorServerBusy):
                    busy.append(item)
                else:
                    done.append((item, self._outcome(answer)))
            if len(answers) < len(todo):  # the server answered fewer than asked: those are unknown
                raise CommandError(
                    self.server,
                    f"CreateItem {folder} ({self.mailbox})",
                    f"{len(todo)} items sent, {len(answers)} answers",
                    status="ERROR",
                    retryable=True,
                )
            if not busy:
                return done
            todo = busy
        raise protocol_error(
            ErrorServerBusy("still busy after waiting as told"),
            self.server,
            f"CreateItem {folder} ({self.mailbox})",
            self.account_name,
        )

    def _split(
        self, folder: str, target: Element, run: list[AppendItem], exc: BaseException
    ) -> list[tuple[AppendItem, AppendOutcome]]:
        """HTTP 413: the request was too big for the server's limit. Halve until one message alone is."""
        if len(run) == 1:
            return [(run[0], AppendOutcome(error=words(exc), code=HTTP_413))]
        half = len(run) // 2
        return [*self._create(folder, target, run[:half]), *self._create(folder, target, run[half:])]

    def _too_big(self, item: AppendItem) -> AppendOutcome:
        return AppendOutcome(
            error=(
                f"this message is {encoded_size(item)} bytes in an EWS request (MIME in base64), more than "
                f"the request limit of {self.request_limit} bytes ([target] request_limit_bytes)"
            ),
            code="request-limit",
        )

    def _outcome(self, answer: Element | Exception) -> AppendOutcome:
        if not isinstance(answer, Exception):
            return AppendOutcome(item_id=created_id(answer))
        code = code_of(answer)
        return AppendOutcome(
            error=words(answer),
            code=code,
            fatal_for_mailbox=code in MAILBOX_FULL_CODES or code in MAILBOX_CODES,
        )

    # -- recovery and verification ---------------------------------------------------------------

    def find_by_keys(self, folder: str, keys: Sequence[str]) -> dict[str, str]:
        """``{key: item id}`` of the items of ``folder`` carrying one of ``keys`` (FindItem restriction)."""
        node = self._folder(folder)
        found: dict[str, str] = {}
        for start in range(0, len(keys), KEYS_PER_FIND):
            wanted = keys[start : start + KEYS_PER_FIND]
            for element in self._items(node.id, folder, wanted, full=False):
                key = extended_values(element).get(KEY)
                if key is not None:
                    found.setdefault(key, item_id(element))
        return found

    def _items(self, folder_id: str, folder: str, keys: Sequence[str], *, full: bool) -> Iterator[Element]:
        offset = 0
        while True:
            (answer,) = self._checked(
                "FindItem", find_request(folder_id, offset, keys, full=full), f"FindItem {folder}"
            )
            items, last = page_items(answer)
            yield from items
            if last:
                return
            offset += len(items)

    def kept_items(self, folder: str, *, deep: bool) -> dict[str, KeptItem]:
        node = self._folder(folder)
        elements = list(self._items(node.id, folder, (), full=True))
        mimes: dict[str, bytes | None] = {}
        if deep:
            ids = [item_id(e) for e in elements]
            for start in range(0, len(ids), MIME_PER_GET):
                batch = ids[start : start + MIME_PER_GET]
                for one, answer in zip(
                    batch, self._checked("GetItem", mime_request(batch), f"GetItem {folder}"), strict=True
                ):
                    mimes[one] = mime_of(answer)
        return {item_id(e): kept_of(e, mimes.get(item_id(e)) if deep else None) for e in elements}

    def digests(self, folder: str) -> Iterator[tuple[str, int, bytes]]:
        """Never asked (``keeps_bytes`` is false): Exchange re-renders MIME, no digest proves a copy."""
        return iter(())

    def list_items(self, folder: str) -> dict[str, ListedItem]:
        """Never asked (``keeps_bytes`` is false): sizes and received times are in ``kept_items``."""
        return {}

    def set_flags(self, folder: str, changes: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        """Never asked (``flags_mutable`` is false): PR_MESSAGE_FLAGS is read-only after creation."""
        if changes:
            raise ProtocolError(
                self.server, f"set flags {folder}", "EWS items keep the flags they were created with"
            )

    def mail_tips(self, recipients: Sequence[str]) -> dict[str, tuple[int | None, bool | None] | str]:
        """GetMailTips (MaxMessageSize, MailboxFullStatus) for ``recipients``: ``{address: (max message
        size, mailbox full)}``, or the server's words for a recipient it answered with an error
        (readiness; learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getmailtips-operation)."""
        request = m("GetMailTips")
        sending = m("SendingAs")
        sending.append(t("EmailAddress", self.mailbox))
        request.append(sending)
        wanted = m("Recipients")
        for address in recipients:
            mailbox = t("Mailbox")
            mailbox.append(t("EmailAddress", address))
            wanted.append(mailbox)
        request.append(wanted)
        request.append(m("MailTipsRequested", "MaxMessageSize MailboxFullStatus"))
        out: dict[str, tuple[int | None, bool | None] | str] = {}
        for address, answer in zip(
            recipients, self._call("GetMailTips", request, "GetMailTips"), strict=False
        ):
            if isinstance(answer, Exception):
                out[address] = words(answer)
                continue
            tips = answer.find(mn("MailTips"))
            size = tips.findtext(tn("MaxMessageSize")) if tips is not None else None
            full = tips.findtext(tn("MailboxFull")) if tips is not None else None
            out[address] = (
                int(size) if size and size.isdigit() else None,
                None if full is None else full.strip().lower() == "true",
            )
        return out

    def close(self) -> None:
        """Nothing to hang up: the HTTP sessions belong to the account's shared pool."""

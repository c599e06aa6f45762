"""GraphEmulator: the emulated service as a test or the demo lab holds it."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lab.graph.config import GraphConfig, UserConfig
from lab.graph.context import Tenant
from lab.graph.faults import Gate, rule
from lab.graph.mailbox import Mailbox, Message
from lab.graph.server import _Server, make_server
from lab.graph.service import Service
from lab.graph.throttle import ThrottleEvent
from lab.tls import client_context, make_server_tls


@dataclass(frozen=True, slots=True)
class Item:
    """One message as the emulator holds it (for tests' assertions)."""

    id: str
    immutable_id: str
    folder: str  # display names below the root, "/"-joined: "Inbox", "Inbox/Projects"
    route: str  # "json" or "importMime"
    is_draft: bool
    is_read: bool
    flag_status: str
    categories: tuple[str, ...]
    received: dt.datetime
    sent: dt.datetime | None
    created: dt.datetime
    subject: str
    internet_message_id: str | None
    in_reply_to: str | None
    references: str | None
    properties: dict[str, str]  # extended properties as set: {id as the client spelled it: value}
    attachments: tuple[tuple[str, bytes], ...]  # (name, bytes)
    headers: tuple[tuple[str, str], ...]
    body_type: str
    body: str


def _item(mailbox: Mailbox, message: Message) -> Item:
    return Item(
        id=message.id,
        immutable_id=message.immutable_id,
        folder=mailbox.folder_path(message.folder_id),
        route=message.route,
        is_draft=message.is_draft,
        is_read=message.is_read,
        flag_status=message.flag_status,
        categories=tuple(message.categories),
        received=message.received,
        sent=message.sent,
        created=message.created,
        subject=message.subject,
        internet_message_id=message.internet_message_id,
        in_reply_to=message.in_reply_to,
        references=message.references,
        properties={p.id: p.value for p in message.properties.values()},
        attachments=tuple((a.name, a.data) for a in message.attachments),
        headers=tuple(message.headers),
        body_type=message.body_type,
        body=message.body,
    )


class GraphEmulator:
    """See the package docstring (lab/graph/__init__.py) for the whole public API."""

    def __init__(self, config: GraphConfig, host: str = "127.0.0.1") -> None:
        self.config = config
        self.host = host
        self.tenant = Tenant(config)
        self._service = Service(self.tenant)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._directory: Path | None = None
        self._ca_file: Path | None = None
        self.started_at = 0.0

    # ---- life cycle ---------------------------------------------------------------------------------

    def start(self) -> GraphEmulator:
        if self._server is not None:
            return self
        self._directory = Path(tempfile.mkdtemp(prefix="graph-emulator-"))
        tls, self._ca_file = make_server_tls(
            self._directory, self.host, ("localhost",), "cutover lab Graph emulator CA"
        )
        self._server = make_server(self.host, self._service, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="graph-emulator", daemon=True)
        self._thread.start()
        self.started_at = time.time()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self.tenant.faults.clear()
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- where it is --------------------------------------------------------------------------------

    def _running(self) -> _Server:
        if self._server is None:
            raise RuntimeError("the Graph emulator is not started")
        return self._server

    @property
    def graph_url(self) -> str:
        """https://127.0.0.1:PORT: the base; requests go to {graph_url}/v1.0/... and /beta/..."""
        return self._running().base_url

    @property
    def authority(self) -> str:
        """https://127.0.0.1:PORT/{tenant id}: msal's authority (with instance_discovery=False)."""
        return f"{self._running().base_url}/{self.config.tenant_id}"

    @property
    def token_url(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def ca_file(self) -> str:
        """PEM of the throwaway CA that signed the server's certificate (msal's verify=, httpx's)."""
        if self._ca_file is None:
            raise RuntimeError("the Graph emulator is not started")
        return str(self._ca_file)

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting only the emulator's CA (httpx.Client(verify=...))."""
        return client_context(Path(self.ca_file))

    # ---- the tenant ---------------------------------------------------------------------------------

    def add_user(self, user: UserConfig) -> None:
        self.tenant.add_user(user)

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (the next request with one is 401)."""
        self.tenant.minter.revoke_all()

    # ---- faults -------------------------------------------------------------------------------------

    def drop_after_create(self, count: int = 1, *, mailbox: str | None = None) -> None:
        """The next count creates (JSON or importMime) succeed, then the connection closes unanswered."""
        self.tenant.faults.add(rule("drop_after_create", count, _lower(mailbox)))

    def fail_with_503(
        self, count: int = 1, *, mailbox: str | None = None, retry_after: int | None = None
    ) -> None:
        """The next count mailbox requests answer 503 ServiceUnavailable without doing anything."""
        self.tenant.faults.add(rule("503", count, _lower(mailbox), retry_after=retry_after))

    def poison(self, marker: bytes, *, mailbox: str | None = None) -> None:
        """Every importMime whose MIME holds ``marker`` answers 500 ErrorInternalServerError, nothing
        made, for as long as the emulator runs (or until ``clear_faults``): an item Exchange Online
        can't convert, the same way each time (its other requests are untouched)."""
        self.tenant.faults.poison(marker, _lower(mailbox))

    def slow(self, seconds: float, count: int = 1, *, mailbox: str | None = None) -> None:
        """The next count mailbox requests wait seconds (holding their concurrency slot) before work."""
        self.tenant.faults.add(rule("slow", count, _lower(mailbox), seconds=seconds))

    def gate(self, mailbox: str) -> Gate:
        """Hold every request for the mailbox in flight (slot taken) until gate.release()."""
        return self.tenant.faults.gate(mailbox.lower())

    def clear_faults(self) -> None:
        self.tenant.faults.clear()

    @property
    def dropped_creates(self) -> list[str]:
        """Immutable ids of the items whose create answer was dropped."""
        return list(self.tenant.faults.dropped)

    # ---- inspection ---------------------------------------------------------------------------------

    def _mailbox(self, address: str) -> Mailbox:
        mailbox = self.tenant.mailboxes.get(address.lower())
        if mailbox is None:
            raise KeyError(f"no mailbox {address}")
        return mailbox

    def items(self, mailbox: str, folder: str | None = None) -> list[Item]:
        """The mailbox's messages (those of one folder path when given), oldest first."""
        box = self._mailbox(mailbox)
        with box.lock:
            found = [_item(box, m) for m in box.messages.values()]
        if folder is not None:
            found = [i for i in found if i.folder.lower() == folder.lower()]
        return sorted(found, key=lambda i: i.created)

    def delete_item(self, mailbox: str, item_id: str) -> None:
        """Remove a message behind the client's back, as its user would delete it."""
        box = self._mailbox(mailbox)
        with box.lock:
            message = box.message(item_id)
            if message is None:
                raise KeyError(f"no item {item_id}")
            box.delete(message)

    def folders(self, mailbox: str) -> list[str]:
        """Every folder path of the mailbox ("Inbox", "Inbox/Projects", ...), sorted."""
        box = self._mailbox(mailbox)
        with box.lock:
            return sorted(box.folder_path(f) for f in box.folders if box.folders[f].parent_id is not None)

    @property
    def unknown_requests(self) -> list[str]:
        """Requests that used a path, field or query option the emulator doesn't know (each got a 400)."""
        with self.tenant.lock:
            return list(self.tenant.unknown_requests)

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of requests the emulator itself failed on (each answered 500): [] in a good run."""
        with self.tenant.lock:
            return list(self.tenant.internal_errors)

    @property
    def throttled(self) -> list[ThrottleEvent]:
        """Every 429 answered, in order (at: time.time(); reason MailboxConcurrency/Requests/UploadBytes)."""
        return list(self.tenant.throttle.events)

    def throttled_after(self, seconds: float) -> list[ThrottleEvent]:
        """The 429s answered more than seconds after start (e.g. "429s after the first minute")."""
        return [e for e in self.throttled if e.at - self.started_at > seconds]

    def request_counts(self, mailbox: str) -> dict[str, int]:
        """Counters for a mailbox: "requests" (every answered request, $batch's inner ones each),
        "status:200", "status:429", … per status answered, "create:json", "create:importMime",
        "create:mime", "list", "get", "update", "move", "delete", "mime", "attachment:add",
        "attachment:session", "attachment:uploaded". Upload-URL PUTs are not in "requests"."""
        with self.tenant.lock:
            return {op: n for (box, op), n in self.tenant.counters.items() if box == mailbox.lower()}

    def in_flight(self, mailbox: str) -> int:
        return self.tenant.throttle.in_flight(mailbox.lower())

    def peak_in_flight(self, mailbox: str) -> int:
        """The most requests the mailbox had in flight at once (never above the concurrency limit)."""
        return self.tenant.throttle.peak_in_flight.get(mailbox.lower(), 0)

    def tamper(
        self,
        mailbox: str,
        item_id: str,
        *,
        attachment: tuple[int, bytes] | None = None,
        received: dt.datetime | None = None,
        sent: dt.datetime | None = None,
        body: str | None = None,
        is_read: bool | None = None,
    ) -> None:
        """Change an item behind the client's back (verify tests): attachment=(index, new bytes)."""
        box = self._mailbox(mailbox)
        with box.lock:
            message = box.message(item_id)
            if message is None:
                raise KeyError(f"no item {item_id} in {mailbox}")
            if attachment is not None:
                message.attachments[attachment[0]].data = attachment[1]
            if received is not None:
                message.received = received.astimezone(dt.UTC)
            if sent is not None:
                message.sent = sent.astimezone(dt.UTC)
            if body is not None:
                message.body = body
            if is_read is not None:
                message.is_read = is_read
            box.resized(message)


def _lower(mailbox: str | None) -> str | None:
    return mailbox.lower() if mailbox else None

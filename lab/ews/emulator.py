"""``EwsEmulator``: start, stop, inject faults, inspect and tamper with what it stores."""

from __future__ import annotations

import datetime
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from lab.ews.config import EwsConfig
from lab.ews.engine import INJECTION_KINDS, Engine, Injection
from lab.ews.ntlm import register_accounts
from lab.ews.server import _Server, serve
from lab.ews.store import Item, Mailbox
from lab.tls import make_server_tls


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class EwsEmulator:
    """A strict Exchange Web Services server on loopback, for tests and the demo (see ``lab.ews``)."""

    def __init__(
        self,
        config: EwsConfig,
        *,
        host: str = "127.0.0.1",
        now: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self.config = config
        self.host = host
        self._engine = Engine(config, now)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._directory: Path | None = None
        self.port = 0
        self.ca_file = Path()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> EwsEmulator:
        if self._server is not None:
            return self
        if "ntlm" in self.config.auth_modes:
            register_accounts(self.config.accounts)
        self._directory = Path(tempfile.mkdtemp(prefix="ews-emulator-"))
        tls, self.ca_file = make_server_tls(
            self._directory, self.host, ("localhost",), "cutover lab EWS emulator CA"
        )
        self._server = serve(self._engine, tls, self.host)
        self.port = self._server.server_address[1]
        self._engine.base_url = f"https://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"ews-emulator:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        with self._engine.lock:
            for injection in self._engine.injections:
                if injection.gate is not None:
                    injection.gate.set()  # a held request must not outlive the server
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> EwsEmulator:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The EWS endpoint: ``https://127.0.0.1:PORT/EWS/Exchange.asmx``."""
        return f"https://{self.host}:{self.port}/EWS/Exchange.asmx"

    @property
    def autodiscover_url(self) -> str:
        """The SOAP Autodiscover endpoint (POX: the same with ``autodiscover.xml``)."""
        return f"https://{self.host}:{self.port}/autodiscover/autodiscover.svc"

    # -- faults on command ---------------------------------------------------------------------

    def inject(
        self,
        kind: str,
        operation: str = "CreateItem",
        count: int = 1,
        *,
        seconds: float = 0.0,
        back_off_ms: int = 30_000,
        code: str = "ErrorItemCorrupt",
    ) -> None:
        """The next ``count`` requests of ``operation`` meet ``kind``:

        - ``"drop_after"``: the operation succeeds, then the connection is dropped unanswered;
        - ``"http_503"``: HTTP 503 (IIS queueing), nothing done;
        - ``"slow"``: the answer comes ``seconds`` later (the operation still happens);
        - ``"server_busy"``: ErrorServerBusy with ``BackOffMilliseconds`` = ``back_off_ms``, nothing done;
        - ``"item_error"``: the next ``count`` items (not requests) of ``operation`` (CreateItem)
          fail with ResponseCode ``code`` while the rest of the batch goes on.
        """
        if kind not in INJECTION_KINDS:
            raise ValueError(f"unknown injection {kind!r}; one of {', '.join(INJECTION_KINDS)}")
        with self._engine.lock:
            self._engine.injections.append(Injection(kind, operation, count, seconds, back_off_ms, code=code))

    def poison(self, marker: bytes) -> None:
        """Every CreateItem that carries a MIME holding ``marker`` dies at that item: the items
        before it in the request are saved, then the connection closes unanswered, every time (an
        item that crashes the store worker converting it, as corrupt items do on Exchange)."""
        with self._engine.lock:
            self._engine.poisons.append(marker)

    def hold(self, operation: str, count: int = 1) -> threading.Event:
        """The next ``count`` requests of ``operation`` wait inside the server (counted as in
        flight) until the returned event is set: a deterministic way to fill a concurrency budget."""
        gate = threading.Event()
        with self._engine.lock:
            self._engine.injections.append(Injection("hold", operation, count, gate=gate))
        return gate

    def clear_injections(self) -> None:
        with self._engine.lock:
            self._engine.injections.clear()
            self._engine.poisons.clear()

    # -- inspection ----------------------------------------------------------------------------

    @property
    def unknown_requests(self) -> list[str]:
        """Every request refused because the emulator did not know or does not model something in
        it (schema violations included). A test that drives a client asserts this stays empty."""
        with self._engine.lock:
            return list(self._engine.unknown)

    @property
    def requests(self) -> dict[str, int]:
        """Requests per operation ("CreateItem": 3, …; "(throttled)" for concurrency refusals)."""
        with self._engine.lock:
            return dict(self._engine.requests)

    @property
    def http_statuses(self) -> dict[int, int]:
        with self._engine.lock:
            return dict(self._engine.statuses)

    def in_flight(self, user: str) -> int:
        """Requests of this logon name being served now (what EWSMaxConcurrency counts)."""
        with self._engine.lock:
            return self._engine.in_flight[user.lower()]

    def mailbox(self, address: str) -> Mailbox:
        """The stored mailbox (folders, items): read it, don't change it (use ``tamper``)."""
        return self._engine.store.mailbox(address)

    def items(self, address: str, folder: str = "inbox") -> list[Item]:
        """The items of a folder, by distinguished id ("inbox") or display path ("Archive/2019")."""
        with self._engine.store.lock:
            return list(self.mailbox(address).folder(folder).items.values())

    def delete_item(self, address: str, item_id: str) -> None:
        """Remove an item behind the client's back, as its user would delete it."""
        with self._engine.store.lock:
            mailbox = self.mailbox(address)
            for folder in mailbox.folders.values():
                item = folder.items.pop(item_id, None)
                if item is not None:
                    mailbox.bytes_used -= item.size
                    return
        raise KeyError(f"no item {item_id}")

    def folder_names(self, address: str) -> list[str]:
        """Every folder under the message root as a display path ("Inbox/Projects")."""
        mailbox = self.mailbox(address)
        root = mailbox.distinguished["msgfolderroot"]
        paths: list[str] = []

        def walk(folder_id: str, prefix: str) -> None:
            for child in sorted(mailbox.children(folder_id), key=lambda f: f.display_name.lower()):
                path = f"{prefix}{child.display_name}"
                paths.append(path)
                walk(child.folder_id, f"{path}/")

        with self._engine.store.lock:
            walk(root, "")
        return paths

    def tamper(
        self,
        item_id: str,
        *,
        attachment: tuple[int, bytes] | None = None,
        received: datetime.datetime | None = None,
        sent: datetime.datetime | None = None,
        is_read: bool | None = None,
        categories: list[str] | None = None,
        body: tuple[int, str] | None = None,
    ) -> None:
        """Change a stored item behind the client's back, for verify tests: attachment
        ``(index, new bytes)``, the received or sent time, the read state, the categories, or the
        text of body part ``(index, new text)``."""
        with self._engine.store.lock:
            item = next(
                (m.find_item(item_id) for m in self._engine.store.mailboxes.values() if m.find_item(item_id)),
                None,
            )
            if item is None:
                raise KeyError(item_id)
            if attachment is not None:
                item.attachments[attachment[0]].data = attachment[1]
            if received is not None:
                item.received = received.astimezone(datetime.UTC)
            if sent is not None:
                item.sent = sent.astimezone(datetime.UTC)
            if is_read is not None:
                item.message_flags = item.message_flags | 1 if is_read else item.message_flags & ~1
            if categories is not None:
                item.categories = list(categories)
            if body is not None:
                item.bodies[body[0]].text = body[1]

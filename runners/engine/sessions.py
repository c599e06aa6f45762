"""Opening source and target sessions for one mailbox, under a per-server connection cap."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runners.connectors.base import SourceSession, TargetSession
from runners.connectors.imap_login import open_imap
from runners.connectors.imap_source import ImapSource
from runners.connectors.imap_target import ImapTarget
from runners.errors import AuthError, MigrationError
from runners.plan.model import Endpoint, MailboxEntry, Secret

T = TypeVar("T")


class ConnectionCaps:
    """One semaphore per server address so no server gets more than ``max_connections`` from us."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._caps: dict[str, threading.BoundedSemaphore] = {}

    def semaphore(self, endpoint: Endpoint) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._caps.get(endpoint.address)
            if sem is None:
                sem = self._caps[endpoint.address] = threading.BoundedSemaphore(endpoint.max_connections)
            return sem


def user_password(endpoint: Endpoint, user: str, override: Secret | None) -> str | None:
    """The per-user password for ``auth = "password"``: CSV column first, then the endpoint's reference."""
    if endpoint.auth != "password":
        return None
    secret = override or (
        Secret(endpoint.password.ref.replace("{user}", user)) if endpoint.password else None
    )
    if secret is None:
        raise AuthError(endpoint.address, f"LOGIN {user}", "no password is configured for this user")
    return secret.reveal()


def open_source(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    user = entry.source
    if endpoint.type == "imap":
        return ImapSource(open_imap(endpoint, user, user_password(endpoint, user, entry.source_password)))
    if endpoint.type == "pop3":
        from runners.connectors.pop3_source import open_pop3_source

        master = None
        if endpoint.auth == "master":
            assert endpoint.master_user is not None and endpoint.master_password is not None
            master = (endpoint.master_user, endpoint.master_password.reveal())
        return open_pop3_source(endpoint, user, user_password(endpoint, user, entry.source_password), master)
    if endpoint.type == "maildir":
        from runners.connectors.maildir_source import open_maildir_source

        assert endpoint.path is not None
        return open_maildir_source(Path(endpoint.path.replace("{user}", user)), endpoint.maildir_layout)
    raise MigrationError(f"{endpoint.type} can't be a source")


def open_target(endpoint: Endpoint, entry: MailboxEntry) -> TargetSession:
    user = entry.target
    if endpoint.type == "imap":
        return ImapTarget(open_imap(endpoint, user, user_password(endpoint, user, entry.target_password)))
    raise MigrationError(f"target type {endpoint.type!r} is not supported by this engine yet")


def capped(sem: threading.BoundedSemaphore, opener: Callable[[], T]) -> T:
    """Open under the cap; the caller releases ``sem`` when it closes the session."""
    sem.acquire()
    try:
        return opener()
    except BaseException:
        sem.release()
        raise

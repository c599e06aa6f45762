"""Typed, validated plan. Built only by ``runners.plan.loader.load_plan``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from runners.errors import SecretError

DEFAULT_WORKERS = 4
DEFAULT_BATCH_MESSAGES = 200
#: Each mailbox worker holds about three batches (being fetched, queued, being appended): 1 MiB keeps
#: 8 workers under 120 MB with no measurable loss of throughput (docs/benchmarks.md).
DEFAULT_BATCH_BYTES = 1024 * 1024

EndpointType = Literal["imap", "pop3", "maildir", "ews", "graph"]
Security = Literal["plain", "starttls", "tls"]
AuthMode = Literal["master", "password"]


@dataclass(frozen=True, slots=True)
class Secret:
    """A reference to a secret: ``env:NAME``, ``file:PATH`` or a literal value.

    The value is read only when ``reveal()`` is called, and never appears in ``repr``/``str``, so a
    plan can be logged, printed or stored without leaking it.
    """

    ref: str

    def reveal(self) -> str:
        if self.ref.startswith("env:"):
            name = self.ref[4:]
            value = os.environ.get(name)
            if value is None:
                raise SecretError(f"environment variable {name} is not set")
            return value
        if self.ref.startswith("file:"):
            path = self.ref[5:]
            try:
                return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"secret file {path} can't be read: {exc.strerror}") from None
        return self.ref

    @property
    def described(self) -> str:
        """Where the secret comes from, safe to show (a literal shows as ``<literal>``)."""
        if self.ref.startswith(("env:", "file:")):
            return self.ref
        return "<literal>"

    def __repr__(self) -> str:
        return f"Secret({self.described})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of the migration (``[source]`` or ``[target]``)."""

    type: EndpointType
    host: str | None = None
    port: int | None = None
    security: Security = "tls"
    auth: AuthMode = "password"
    master_user: str | None = None
    master_password: Secret | None = None
    #: How a master login is spelled. None = SASL PLAIN with authorization identity = user
    #: (Dovecot, Cyrus). Otherwise a template such as ``"{user}*{master}"`` (Dovecot separator
    #: login) or ``"domain\\{master}\\{user}"`` (Exchange), sent with the master password.
    login_template: str | None = None
    #: Default per-user password reference for auth = "password"; may contain ``{user}``
    #: (``"file:/secrets/{user}"``). A CSV password column overrides it.
    password: Secret | None = None
    tls_verify: bool = True
    ca_file: str | None = None
    timeout: float = 60.0
    max_connections: int = 10
    max_message_bytes: int | None = None
    #: Maildir only: root of the tree, with ``{user}`` (``"/var/mail/{user}/Maildir"``).
    path: str | None = None
    #: Maildir only: "dovecot" (``.Sub.Folder`` directories) or "courier" (same, ``INBOX.`` names).
    maildir_layout: Literal["dovecot", "courier"] = "dovecot"

    @property
    def address(self) -> str:
        if self.type == "maildir":
            return f"maildir:{self.path}"
        return f"{self.type}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class FolderRules:
    """``[folders]``: renames and excludes, by source path written with ``/`` (``"Archive/2023"``)."""

    rename: dict[str, str] = field(default_factory=dict)
    #: fnmatch-style patterns on the source path; a matching folder and its messages are left out.
    exclude: tuple[str, ...] = ()
    #: Special-use → target folder path overrides: ``{"sent": "Sent Items"}``.
    special: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MailboxEntry:
    source: str
    target: str
    wave: str
    source_password: Secret | None = None
    target_password: Secret | None = None
    #: Where the row is, for error messages: ``mailboxes.csv:12``.
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    path: Path
    source: Endpoint
    target: Endpoint
    mailboxes: tuple[MailboxEntry, ...]
    folders: FolderRules = field(default_factory=FolderRules)
    #: Directory of the state store and run logs (``[state] dir``; default ``.cutover`` beside the plan).
    state_dir: Path = Path(".cutover")
    #: Default worker count for ``cutover run`` (``[run] workers``).
    workers: int = DEFAULT_WORKERS
    #: Messages per APPEND batch and bytes per batch (``[run] batch_messages``, ``batch_bytes``).
    batch_messages: int = DEFAULT_BATCH_MESSAGES
    batch_bytes: int = DEFAULT_BATCH_BYTES

    @property
    def state_db(self) -> Path:
        return self.state_dir / "state.db"

    def wave(self, name: str) -> tuple[MailboxEntry, ...]:
        return tuple(m for m in self.mailboxes if m.wave == name)

    @property
    def waves(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for m in self.mailboxes:
            seen.setdefault(m.wave, None)
        return tuple(seen)

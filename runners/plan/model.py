"""Typed, validated plan. Built only by ``runners.plan.loader.load_plan``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from runners.plan.proxy_capture_options import CaptureSettings
from runners.plan.readiness_model import ReadinessConfig
from runners.plan.secret import Secret as Secret  # part of the plan model API
from runners.plan.window_options import WindowSettings

if TYPE_CHECKING:
    # Annotations only: each loads with a plan that has its section (loader.py, endpoint.py), and a
    # runner's plan has none of them; importing them here cost `cutover run` a tenth of its imports.
    from runners.plan.ews_options import EwsOptions
    from runners.plan.graph_options import GraphOptions
    from runners.plan.proxy_model import ProxyOptions
    from runners.plan.state_model import StateServer
    from runners.plan.switch_model import SwitchSettings

DEFAULT_WORKERS = 4
DEFAULT_BATCH_MESSAGES = 200
#: Each mailbox worker holds about three batches (being fetched, queued, being appended): 1 MiB keeps
#: 8 workers under 120 MB with no measurable loss of throughput (docs/benchmarks.md).
DEFAULT_BATCH_BYTES = 1024 * 1024

EndpointType = Literal["imap", "pop3", "maildir", "ews", "graph"]
Security = Literal["plain", "starttls", "tls"]
AuthMode = Literal["master", "password"]


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
    #: EWS only: service account, auth, impersonation, request limit (``runners.plan.ews_options``).
    ews: EwsOptions | None = None
    #: Graph only: the app's identity, URLs, route and pace (``runners.plan.graph_options``).
    graph: GraphOptions | None = None

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
    #: The mailbox's mail address when ``source`` is a login that isn't one (``jsmith``): what the
    #: readiness checks join directory, source and target findings on. The engine logs in with ``source``.
    address: str | None = None


@dataclass(frozen=True, slots=True)
class WaveSettings:
    """One ``[[waves]]`` entry."""

    name: str
    #: A trial wave: launching it from the cockpit asks for a yes, not for its name typed.
    pilot: bool = False
    #: ``start = "on-login"``: a mailbox is queued for the engine at its user's first login through the
    #: routing proxy, and a run of the wave copies only the queued ones.
    on_login: bool = False


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
    #: ``[dns]``, ``[directory.*]``, ``[capacity]``, ``[checks]``, ``[[waivers]]``: the readiness checker's inputs.
    readiness: ReadinessConfig = field(default_factory=ReadinessConfig)
    #: ``[[waves]]`` in the plan's order (empty: the mailbox list's order, no pilot).
    wave_settings: tuple[WaveSettings, ...] = ()
    #: ``[switch]``: the DNS records and the directory's routing attribute the cutover switch changes.
    switch: SwitchSettings | None = None
    #: ``[window]``: when the cutover window opens and how long it lasts (runners.window reads it).
    window: WindowSettings = field(default_factory=WindowSettings)
    #: ``[proxy.capture]``: passwords the routing proxy keeps for ``captured:`` references.
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    #: ``[proxy]``: the routing proxy's listeners, backends, routing and limits (None: no proxy).
    proxy: ProxyOptions | None = None
    #: ``[state] url``: a shared PostgreSQL store instead of SQLite under ``state_dir`` (runners.state.open).
    state_server: StateServer | None = None
    #: ``[runner] lease_seconds``: how long a runner holds a mailbox without renewing it (a fleet's takeover).
    lease_seconds: float = 120.0
    #: ``[run] connections_per_mailbox``: connections on each side one mailbox may use at most (None:
    #: what the servers' ``max_connections`` leave each worker, up to 4; see runners/engine/lanes.py).
    connections_per_mailbox: int | None = None

    @property
    def target_domains(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for m in self.mailboxes:
            if "@" in m.target:
                seen.setdefault(m.target.rpartition("@")[2].lower(), None)
        return tuple(seen)

    @property
    def state_db(self) -> Path:
        return self.state_dir / "state.db"

    def wave(self, name: str) -> tuple[MailboxEntry, ...]:
        return tuple(m for m in self.mailboxes if m.wave == name)

    @property
    def waves(self) -> tuple[str, ...]:
        """The waves in the plan's order: ``[[waves]]``, else as they first appear in the mailbox list."""
        if self.wave_settings:
            return tuple(w.name for w in self.wave_settings)
        seen: dict[str, None] = {}
        for m in self.mailboxes:
            seen.setdefault(m.wave, None)
        return tuple(seen)

    def is_pilot(self, wave: str) -> bool:
        """Whether the plan marks ``wave`` as a pilot (``[[waves]] pilot = true``), whatever its name."""
        return any(w.name == wave and w.pilot for w in self.wave_settings)

    def starts_on_login(self, wave: str) -> bool:
        """Whether ``wave`` is marked ``start = "on-login"`` (its users' logins queue their mailboxes)."""
        return any(w.name == wave and w.on_login for w in self.wave_settings)

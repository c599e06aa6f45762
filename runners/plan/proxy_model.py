"""The ``[proxy]`` section as data (``runners.plan.proxy_options`` reads it; ``runners.proxy.settings``
turns it into the proxy's contracts). Services and TLS modes are the strings the plan spells."""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.plan.proxy_smtp_options import ProxySmtpSettings
from runners.plan.switch_model import RoutingDirectory


@dataclass(frozen=True, slots=True)
class ListenOption:
    service: str  # imap | pop3 | submission | smtp
    host: str
    port: int
    tls: str  # implicit | starttls (STARTTLS offered only when the proxy has a certificate)


@dataclass(frozen=True, slots=True)
class CertificateOption:
    """One certificate for clients; ``names`` are the SNI names it answers (empty: the first is the default)."""

    cert: str
    key: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BackendEndpointOption:
    host: str
    port: int
    tls: str  # implicit | starttls | none
    tls_verify: bool = True
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class BackendOption:
    name: str
    endpoints: dict[str, BackendEndpointOption]
    login_suffix: str = ""
    substitutions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingOption:
    default: str = "legacy"
    #: Login (lower case) -> backend name; asked after the store and the directory.
    static: dict[str, str] = field(default_factory=dict)
    #: The directory to ask (``[switch.directory]``'s server and bind), None: no directory lookup.
    directory: RoutingDirectory | None = None
    attribute: str = ""
    #: The attribute that holds the login the client typed (``mail``, ``uid``).
    match: str = "mail"
    #: Attribute value (lower case) -> backend name.
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LimitsOption:
    max_line_bytes: int = 8192
    max_literal_bytes: int = 8192
    login_timeout_seconds: float = 60.0
    max_unauthenticated_per_address: int = 20
    #: A failed login is answered after this delay, doubled per further failure (Dovecot's way) ...
    auth_failure_delay_seconds: float = 2.0
    auth_failure_max_delay_seconds: float = 15.0
    #: ... and this many failures in a row (per client address, or per user) lock it out for a while.
    lockout_failures: int = 10
    lockout_seconds: float = 300.0
    #: Connecting to a backend, its greeting and STARTTLS: a backend slower than this is "unavailable".
    backend_connect_seconds: float = 1.0
    #: The backend's answer to the login (a backend delays its refusals: Dovecot by 2 s).
    backend_login_seconds: float = 15.0


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    listeners: tuple[ListenOption, ...]
    backends: dict[str, BackendOption]
    routing: RoutingOption
    limits: LimitsOption = field(default_factory=LimitsOption)
    certificates: tuple[CertificateOption, ...] = ()
    #: After a switch, sessions still on the old side are ended after this many seconds (None: never).
    grace_seconds: float | None = None
    #: How long a directory decision is kept (a switch drops every decision at once).
    cache_seconds: float = 30.0
    #: Logins in clear (before STARTTLS) when the proxy has a certificate: "loopback" (only from
    #: loopback clients, Dovecot's default), "never" or "always". Without a certificate: always.
    plaintext_logins: str = "loopback"
    #: ``[proxy.smtp]``: the SMTP side's settings (submission and inbound; the spool).
    smtp: ProxySmtpSettings = field(default_factory=ProxySmtpSettings)
    #: Worker processes serving the listeners (nginx's and Dovecot's way): 1 (the default) the single
    #: process, 0 one per CPU. One is the default because two measured no faster on a 2-core machine
    #: where the backends share the cores (docs/proxy.md). ``runners.proxy.workers`` forks them.
    workers: int = 1

"""The plan's ``[proxy.smtp]`` sub-table: how the proxy's SMTP side (submission and port 25) behaves.

``store_and_forward`` (default false): a port-25 transaction whose recipients live on more than one
backend (or whose backend is down) is spooled durably in ``spool_dir`` and delivered to each backend
later; without it, the recipients of any backend but the first are answered ``451 4.3.0``.
``retry_first_seconds``, ``retry_backoff`` and ``retry_max_seconds`` shape the spool's retries
(the wait after the n-th failure is ``first * backoff**(n-1)``, at most ``max``); after
``give_up_hours`` a message still undelivered moves to the spool's ``failed/`` folder.
``max_message_bytes`` is advertised as ``SIZE`` and enforced (552); ``max_recipients`` per transaction
(452); ``client_timeout_seconds`` for each command or data line of a client; ``backend_timeout_seconds``
for the login dialogue with a backend (connect, greeting, EHLO, STARTTLS, AUTH: a backend down or slow
is answered within it) and for each MAIL, RCPT and DATA command asked of it (while a sender waits,
and in the spool's deliveries); ``backend_data_timeout_seconds`` for the message and its final answer. ``plain_auth_from_loopback`` lets a client
on a loopback address AUTH without TLS (a local webmail); nobody else ever can. ``hostname`` is the
name in the banner, the EHLO reply and the Received header (and the reporting host of notices).
``bounce_via`` names the backend whose ``smtp`` endpoint takes the delivery status notifications
(RFC 3464) the spool sends to the sender of a message it could not deliver (a recipient refused for
good, or still undelivered after ``give_up_hours``); without it no notice is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runners.plan.paths import resolve_path
from runners.plan.tables import Table

PROXY_SMTP_KEYS = (
    "hostname", "store_and_forward", "spool_dir", "retry_first_seconds", "retry_backoff", "retry_max_seconds",
    "give_up_hours", "max_message_bytes", "max_recipients", "client_timeout_seconds", "backend_timeout_seconds",
    "backend_data_timeout_seconds", "plain_auth_from_loopback", "max_auth_failures", "bounce_via",
)  # fmt: skip

_MIB = 1024 * 1024
#: A host name as it may stand in a banner and an EHLO reply (no blanks, no controls).
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class ProxySmtpSettings:
    hostname: str = "cutover-proxy"
    store_and_forward: bool = False
    #: Where spooled messages wait; required (and only used) with ``store_and_forward``.
    spool_dir: Path | None = None
    retry_first_seconds: float = 60.0
    retry_backoff: float = 2.0
    retry_max_seconds: float = 3600.0
    give_up_hours: float = 120.0
    max_message_bytes: int = 50 * _MIB
    max_recipients: int = 100
    client_timeout_seconds: float = 300.0  # RFC 5321 4.5.3.2: five minutes per command
    backend_timeout_seconds: float = 1.0
    backend_data_timeout_seconds: float = 300.0
    plain_auth_from_loopback: bool = True
    #: Failed AUTH attempts in one session before the proxy says 421 and hangs up.
    max_auth_failures: int = 3
    #: The backend whose ``smtp`` endpoint takes the delivery notices (DSNs) for spooled mail that
    #: failed, addressed to its sender; None: no notice, the operator reads ``failed/``.
    bounce_via: str | None = None

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed delivery attempt (1, 2, ...)."""
        exponent = max(0, failures - 1)
        # Capped before the power overflows a float: the cap is reached long before that anyway.
        if exponent > 64:
            return self.retry_max_seconds
        return min(self.retry_max_seconds, self.retry_first_seconds * self.retry_backoff**exponent)


def load_proxy_smtp(proxy: Table | None, base_dir: Path) -> ProxySmtpSettings:
    """``[proxy.smtp]`` from the ``[proxy]`` table (defaults when absent). Raises ``PlanError``."""
    table = None if proxy is None else proxy.table("smtp")
    if table is None:
        return ProxySmtpSettings()
    table.check_keys(PROXY_SMTP_KEYS)
    store_and_forward = table.boolean("store_and_forward", False)
    spool_text = table.string("spool_dir")
    if store_and_forward and spool_text is None:
        raise table.error("store_and_forward", f'store_and_forward needs "spool_dir" in {table.where}')
    first = table.positive_number("retry_first_seconds", 60.0)
    most = table.positive_number("retry_max_seconds", 3600.0)
    if most < first:
        raise table.error(
            "retry_max_seconds", f"must be at least retry_first_seconds ({first:g}), got {most:g}"
        )
    backoff = table.positive_number("retry_backoff", 2.0)
    if backoff < 1.0:
        raise table.error("retry_backoff", f"must be at least 1 (1: a fixed interval), got {backoff:g}")
    return ProxySmtpSettings(
        hostname=_hostname(table),
        store_and_forward=store_and_forward,
        spool_dir=None if spool_text is None else resolve_path(base_dir, spool_text),
        retry_first_seconds=first,
        retry_backoff=backoff,
        retry_max_seconds=most,
        give_up_hours=table.positive_number("give_up_hours", 120.0),
        max_message_bytes=table.integer("max_message_bytes", 50 * _MIB, low=1024),
        max_recipients=table.integer("max_recipients", 100, low=1, high=10_000),
        client_timeout_seconds=table.positive_number("client_timeout_seconds", 300.0),
        backend_timeout_seconds=table.positive_number("backend_timeout_seconds", 1.0),
        backend_data_timeout_seconds=table.positive_number("backend_data_timeout_seconds", 300.0),
        plain_auth_from_loopback=table.boolean("plain_auth_from_loopback", True),
        max_auth_failures=table.integer("max_auth_failures", 3, low=1, high=100),
        bounce_via=_bounce_via(table, store_and_forward),
    )


def _bounce_via(table: Table, store_and_forward: bool) -> str | None:
    """The backend named for notices; that it exists with an ``smtp`` endpoint is checked with the backends."""
    name = table.string("bounce_via")
    if name is not None and not store_and_forward:
        raise table.error(
            "bounce_via", "notices are sent for spooled mail only: set store_and_forward = true"
        )
    return name


def _hostname(table: Table) -> str:
    name = table.string("hostname")
    if name is None:
        return "cutover-proxy"
    if not _HOSTNAME.fullmatch(name):
        raise table.error("hostname", f'"{name}" is not a host name (letters, digits, dots and dashes)')
    return name

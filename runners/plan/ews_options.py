"""The ``[target]`` keys of ``type = "ews"`` (Exchange Server on-premises over EWS).

The usual migration setup: one service account holding ApplicationImpersonation, its password by
the plan's secret references (``password = "env:EWS_PW"``), NTLM or Basic over TLS, or OAuth for a
hybrid. Exchange Online is refused: Microsoft blocks EWS there for all but allow-listed apps since
2026-10-01 and turns it off in April 2027; Microsoft 365 is the ``graph`` target's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlsplit

from runners.plan.tables import Table

EwsAuth = Literal["basic", "ntlm", "oauth"]
EWS_AUTH: tuple[EwsAuth, ...] = ("basic", "ntlm", "oauth")

#: Exchange 2013 and later: maxAllowedContentLength / maxReceivedMessageSize of the EWS virtual
#: directory (learn.microsoft.com/en-us/exchange/troubleshoot/administration/maxreceivedmessagesize).
DEFAULT_REQUEST_LIMIT = 64 * 1024 * 1024
#: Smaller than this, no real message fits a request at all.
LOWEST_REQUEST_LIMIT = 256 * 1024
#: exchangelib's own chunk size; a plan may lower it (or raise it, within the request limit).
DEFAULT_BATCH_ITEMS = 100
#: EWSMaxConcurrency of Exchange 2013 and later's default throttling policy.
DEFAULT_MAX_CONCURRENCY = 27
DEFAULT_EWS_PATH = "/EWS/Exchange.asmx"

#: Exchange Online's EWS hosts: refused, with the reason.
_ONLINE_HOSTS = ("outlook.office365.com", "outlook.office.com")
_ONLINE_SUFFIXES = (".office365.com",)
ONLINE_REFUSAL = (
    "is Exchange Online: Microsoft blocks EWS there for all but allow-listed apps since 2026-10-01 "
    'and turns it off in April 2027; use type = "graph" for Microsoft 365'
)


@dataclass(frozen=True, slots=True)
class EwsOptions:
    """What the EWS target needs beyond host, port, TLS and the password reference."""

    auth: EwsAuth
    #: The account that logs in (``DOMAIN\\svc-migrate`` or a UPN); its password is ``Endpoint.password``.
    service_account: str
    #: Full EWS URL given by the plan; None: Autodiscover (``autodiscover``) or the usual path on host.
    url: str | None
    autodiscover: bool
    #: ApplicationImpersonation (true) or delegate access with Full Access (false).
    impersonation: bool
    #: Most bytes one EWS request may carry (after base64, SOAP included).
    request_limit_bytes: int
    #: Most items one CreateItem carries.
    batch_items: int
    #: Requests in flight for the service account (EWSMaxConcurrency), shared by all workers.
    max_concurrency: int
    oauth_client_id: str | None = None
    oauth_tenant_id: str | None = None

    def service_url(self, host: str, port: int | None) -> str:
        """The EWS URL to talk to when Autodiscover isn't asked (or before it answers)."""
        if self.url:
            return self.url
        netloc = f"[{host}]" if ":" in host else host
        if port not in (None, 443):
            netloc += f":{port}"
        return f"https://{netloc}{DEFAULT_EWS_PATH}"


def is_exchange_online(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name in _ONLINE_HOSTS or name.endswith(_ONLINE_SUFFIXES)


def parse_ews_options(table: Table, host: str) -> EwsOptions:
    """The EWS keys of ``table`` (a ``[target]`` of ``type = "ews"``); ``host`` is its checked host."""
    if is_exchange_online(host):
        raise table.error("host", f"{host} {ONLINE_REFUSAL}")
    url = table.string("ews_url")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise table.error(
                "ews_url", 'must be an https URL, e.g. "https://mail.example.com/EWS/Exchange.asmx"'
            )
        if is_exchange_online(parts.hostname):
            raise table.error("ews_url", f"{parts.hostname} {ONLINE_REFUSAL}")
    auth = cast(EwsAuth, table.choice("auth", EWS_AUTH, "ntlm"))
    if "password" not in table:
        raise table.error(None, '[target] of type "ews" is missing "password" (the service account\'s)')
    client_id = table.string("oauth_client_id")
    tenant_id = table.string("oauth_tenant_id")
    if auth == "oauth" and (client_id is None or tenant_id is None):
        raise table.missing("oauth_client_id" if client_id is None else "oauth_tenant_id")
    if auth != "oauth":
        for key in ("oauth_client_id", "oauth_tenant_id"):
            if key in table:
                raise table.error(key, 'is only used with auth = "oauth"')
    return EwsOptions(
        auth=auth,
        service_account=table.required_string("service_account"),
        url=url,
        autodiscover=table.boolean("autodiscover", False),
        impersonation=table.boolean("impersonation", True),
        request_limit_bytes=table.integer(
            "request_limit_bytes", DEFAULT_REQUEST_LIMIT, low=LOWEST_REQUEST_LIMIT
        ),
        batch_items=table.integer("batch_items", DEFAULT_BATCH_ITEMS, low=1, high=1000),
        max_concurrency=table.integer("max_concurrency", DEFAULT_MAX_CONCURRENCY, low=1, high=1000),
        oauth_client_id=client_id,
        oauth_tenant_id=tenant_id,
    )

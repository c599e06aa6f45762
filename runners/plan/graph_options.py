"""``[target]`` keys of a Microsoft Graph target: the app's identity, where to reach Microsoft, the
import route and the per-mailbox budget.

    [target]
    type = "graph"
    tenant_id = "contoso.onmicrosoft.com"         # or the tenant's GUID
    client_id = "00000000-0000-0000-0000-000000000000"
    client_secret = "env:GRAPH_SECRET"             # or: client_certificate = "file:/secrets/app.pem"
    route = "auto"                                 # "import-mime" | "json"
    # authority_url = "https://login.microsoftonline.com"   # overridable (the lab's emulator)
    # graph_url = "https://graph.microsoft.com"
    # pace_concurrency = 4, pace_requests = 10000, pace_request_window = 600,
    # pace_upload_bytes = 150000000, pace_upload_window = 300    (Microsoft's published limits)

A certificate is one PEM file holding the private key and the certificate (msal signs the client
assertion with the key and names the certificate by its SHA-1 thumbprint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlsplit

from runners.plan.secret import Secret
from runners.plan.tables import Table

Route = Literal["auto", "import-mime", "json"]
ROUTES: tuple[Route, ...] = ("auto", "import-mime", "json")
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"


@dataclass(frozen=True, slots=True)
class GraphOptions:
    tenant_id: str
    client_id: str
    #: Exactly one of the two is set.
    client_secret: Secret | None = None
    client_certificate: Secret | None = None
    authority_url: str = DEFAULT_AUTHORITY
    graph_url: str = DEFAULT_GRAPH_URL
    route: Route = "auto"
    #: Per mailbox (Microsoft: per app and mailbox): requests in flight, requests per window, upload
    #: bytes per window.
    pace_concurrency: int = 4
    pace_requests: int = 10_000
    pace_request_window: float = 600.0
    pace_upload_bytes: int = 150_000_000
    pace_upload_window: float = 300.0

    @property
    def authority(self) -> str:
        """What msal calls the authority: the login URL and the tenant."""
        return f"{self.authority_url}/{self.tenant_id}"


def parse_graph_options(table: Table, secret_at: Callable[[str], Secret | None]) -> GraphOptions:
    """The graph keys of ``table`` (a ``[target]`` with type = "graph"), checked with file:line:key;
    ``secret_at(key)`` reads a secret reference the way the rest of the endpoint does."""
    secret = secret_at("client_secret")
    certificate = secret_at("client_certificate")
    if secret is None and certificate is None:
        raise table.error(None, '[target] type = "graph" needs client_secret or client_certificate')
    if secret is not None and certificate is not None:
        raise table.error("client_certificate", "give client_secret or client_certificate, not both")
    return GraphOptions(
        tenant_id=_plain_name(table, "tenant_id"),
        client_id=_plain_name(table, "client_id"),
        client_secret=secret,
        client_certificate=certificate,
        authority_url=_https_url(table, "authority_url", DEFAULT_AUTHORITY),
        graph_url=_https_url(table, "graph_url", DEFAULT_GRAPH_URL),
        route=cast(Route, table.choice("route", ROUTES, "auto")),
        pace_concurrency=table.integer("pace_concurrency", 4, low=1, high=64),
        pace_requests=table.integer("pace_requests", 10_000, low=1),
        pace_request_window=table.positive_number("pace_request_window", 600.0),
        pace_upload_bytes=table.integer("pace_upload_bytes", 150_000_000, low=1),
        pace_upload_window=table.positive_number("pace_upload_window", 300.0),
    )


def _plain_name(table: Table, key: str) -> str:
    value = table.required_string(key)
    if any(c.isspace() or c in "/?#" for c in value):
        raise table.error(key, "must be a name or GUID without spaces or /, ? and #")
    return value


def _https_url(table: Table, key: str, default: str) -> str:
    value = table.string(key)
    if value is None:
        return default
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise table.error(key, f'must be an https:// URL, e.g. "{default}"')
    if parts.query or parts.fragment or parts.path.strip("/"):
        raise table.error(key, f'must be only scheme, host and port, e.g. "{default}"')
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise table.error(key, "has an invalid port") from None
    return f"https://{parts.netloc}"

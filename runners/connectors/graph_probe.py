"""Read-only questions to Microsoft Graph for the readiness checks: the app's token and roles, a
user's mailbox settings, a domain's service configuration records. Nothing here changes a mailbox.

Each question goes through the same paced client as the migration (a mailbox's questions count
against that mailbox's budget; directory questions against the tenant's own scope).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from runners.connectors.graph_errors import failure_of
from runners.connectors.graph_http import GraphHttp
from runners.connectors.graph_pace import graph_pace
from runners.connectors.graph_token import Token, token_source
from runners.pacing import Budget, pace_for
from runners.plan.model import Endpoint

#: Roles each route needs (application permissions); the folder work needs Mail.ReadWrite on both.
ROUTE_ROLES = {
    "json": ("Mail.ReadWrite",),
    "import-mime": ("Mail.ReadWrite", "Mail-Advanced.ReadWrite.All"),
    "auto": ("Mail.ReadWrite",),
}
IMPORT_ROLE = "Mail-Advanced.ReadWrite.All"
SETTINGS_ROLES = ("MailboxSettings.Read", "MailboxSettings.ReadWrite")
DOMAIN_ROLES = ("Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All")


def app_token(endpoint: Endpoint) -> Token:
    assert endpoint.graph is not None
    source = token_source(endpoint.graph, ca_file=endpoint.ca_file, tls_verify=endpoint.tls_verify,
                          timeout=endpoint.timeout)  # fmt: skip
    return source.token()


def _http(endpoint: Endpoint, mailbox: str | None) -> GraphHttp:
    assert endpoint.graph is not None
    source = token_source(endpoint.graph, ca_file=endpoint.ca_file, tls_verify=endpoint.tls_verify,
                          timeout=endpoint.timeout)  # fmt: skip
    pace = (
        graph_pace(mailbox, endpoint.graph)
        if mailbox is not None
        else pace_for(f"graph-directory:{endpoint.graph.tenant_id.lower()}", Budget(concurrency=4))
    )
    return GraphHttp(endpoint, source, pace)


def mailbox_settings(endpoint: Endpoint, user: str) -> tuple[int, dict[str, Any], str]:
    """(status, body, Graph's words) of ``GET /users/{user}/mailboxSettings``: 200 means the user
    exists and has a mailbox the app may reach."""
    http = _http(endpoint, user)
    try:
        response = http.send(
            "GET", f"/v1.0/users/{quote(user, safe='@')}/mailboxSettings", "GET mailboxSettings"
        )
        return response.status_code, _json(response.content), _words(response)
    finally:
        http.close()


def service_records(endpoint: Endpoint, domain: str) -> tuple[int, list[dict[str, Any]], str]:
    """(status, records, Graph's words) of ``GET /domains/{domain}/serviceConfigurationRecords``."""
    http = _http(endpoint, None)
    try:
        records: list[dict[str, Any]] = []
        url: str | None = f"/v1.0/domains/{quote(domain, safe='')}/serviceConfigurationRecords"
        while url is not None:
            response = http.send("GET", url, "GET serviceConfigurationRecords")
            if not response.is_success:
                return response.status_code, [], _words(response)
            data = _json(response.content)
            records.extend(r for r in data.get("value", []) if isinstance(r, dict))
            next_link = data.get("@odata.nextLink")
            url = str(next_link) if next_link else None
        return 200, records, ""
    finally:
        http.close()


def _json(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _words(response: httpx.Response) -> str:
    return "" if response.is_success else failure_of(response).text

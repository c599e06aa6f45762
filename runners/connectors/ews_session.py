"""Opening EWS for one mailbox: the service account's credentials, TLS trust, the exchangelib Account.

exchangelib keeps one HTTP session pool per EWS URL and credentials (its ``Protocol`` cache): every
mailbox of the plan shares it, sized to EWSMaxConcurrency. Its retry policy stays ``FailFast``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import requests.adapters
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    FailFast,
    Identity,
    OAuth2Credentials,
)
from exchangelib.protocol import BaseProtocol

from runners.connectors.ews_wire import record_answer
from runners.plan.ews_options import EwsOptions
from runners.plan.model import Endpoint

_AUTH = {"basic": BASIC, "ntlm": NTLM, "oauth": OAUTH2}

# exchangelib logs whole requests (message bodies, headers) when something fails: never for our
# logs or the terminal. Every failure reaches the operator as one of our errors instead.
_library_log = logging.getLogger("exchangelib")
_library_log.addHandler(logging.NullHandler())
_library_log.propagate = False


class _TrustAdapter(requests.adapters.HTTPAdapter):
    """exchangelib's HTTP adapter, with the plan's TLS trust per host (``ca_file``, ``tls_verify``)."""

    trust: dict[str, bool | str] = {}  # noqa: RUF012 - one table for the process, written under _LOCK

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        verify = self.trust.get(urlsplit(request.url).netloc.lower())
        if verify is not None:
            kwargs["verify"] = verify
        response = super().send(request, *args, **kwargs)
        status = int(response.status_code)
        # A 401's body stays unread: NTLM goes on on this very connection (requests_ntlm reads its socket).
        record_answer(status, str(response.reason or ""), "" if status in (200, 401) else response.text)
        return response


_LOCK = threading.Lock()


def trust(url: str, endpoint: Endpoint) -> None:
    """Make requests to ``url``'s host trust what the plan says (its CA file, or nothing to check)."""
    verify: bool | str = endpoint.ca_file if endpoint.ca_file else endpoint.tls_verify
    with _LOCK:
        BaseProtocol.HTTP_ADAPTER_CLS = _TrustAdapter
        _TrustAdapter.trust[urlsplit(url).netloc.lower()] = verify


def credentials(options: EwsOptions, password: str, mailbox: str) -> Any:
    if options.auth == "oauth":
        return OAuth2Credentials(
            client_id=options.oauth_client_id,
            client_secret=password,
            tenant_id=options.oauth_tenant_id,
            identity=Identity(primary_smtp_address=mailbox),
        )
    return Credentials(options.service_account, password)


def open_account(endpoint: Endpoint, url: str, mailbox: str, password: str) -> Any:
    """An exchangelib Account for ``mailbox`` at ``url``; sends nothing yet (the version is asked once
    per process, on the first request)."""
    options = endpoint.ews
    assert options is not None  # the plan loader fills it for type = "ews"
    trust(url, endpoint)
    config = Configuration(
        service_endpoint=url,
        credentials=credentials(options, password, mailbox),
        auth_type=_AUTH[options.auth],
        retry_policy=FailFast(),
        max_connections=options.max_concurrency,
    )
    account = Account(
        primary_smtp_address=mailbox,
        config=config,
        autodiscover=False,
        access_type=IMPERSONATION if options.impersonation else DELEGATE,
    )
    account.protocol.TIMEOUT = endpoint.timeout
    return account

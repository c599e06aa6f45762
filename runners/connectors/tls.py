"""TLS contexts for every connector: verified unless the plan explicitly says ``tls_verify = false``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runners.plan.model import Endpoint

if TYPE_CHECKING:  # imported by a context's first use: a plain connection has none
    import ssl


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    return client_context(endpoint.ca_file, endpoint.tls_verify)


def client_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (the system's CAs when None); no verification when ``verify`` is False."""
    import ssl

    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

"""TLS contexts for every connector: verified unless the plan explicitly says ``tls_verify = false``."""

from __future__ import annotations

import ssl

from runners.plan.model import Endpoint


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    if not endpoint.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

"""TLS towards clients: the plan's certificates, the right one picked by the name the client asked for
(SNI), the first one when it asked for none or for a name no certificate carries."""

from __future__ import annotations

import fnmatch
import ssl

from runners.plan.proxy_model import CertificateOption


def client_context(certificates: tuple[CertificateOption, ...]) -> ssl.SSLContext | None:
    """The server-side context for clients, or None when the plan gives no certificate."""
    if not certificates:
        return None
    contexts = [(cert.names, _context(cert)) for cert in certificates]
    default = contexts[0][1]
    if len(contexts) > 1:

        def pick(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            if server_name:
                chosen = _matching(contexts, server_name.lower())
                if chosen is not None:
                    ssl_object.context = chosen
            return None

        default.sni_callback = pick
    return default


def _context(cert: CertificateOption) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert.cert, cert.key)
    return context


def _matching(contexts: list[tuple[tuple[str, ...], ssl.SSLContext]], name: str) -> ssl.SSLContext | None:
    for names, context in contexts:
        if name in names:
            return context
    for names, context in contexts:  # then wildcards ("*.example.org")
        if any("*" in pattern and fnmatch.fnmatchcase(name, pattern) for pattern in names):
            return context
    return None

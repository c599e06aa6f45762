"""Autodiscover: which EWS URL serves a mailbox, asked of the plan's Exchange host.

The POX Autodiscover of Exchange Server (learn.microsoft.com/en-us/exchange/client-developer/
web-service-reference/pox-autodiscover-request-for-exchange): POST the mailbox's address to
``https://<host>/autodiscover/autodiscover.xml`` as the service account; the answer's EXCH (or
EXPR) protocol names the EwsUrl. Only the plan's host is asked: never DNS SRV records or other
guesses of exchangelib's discovery, which reach hosts the plan doesn't name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import requests
from requests.auth import HTTPBasicAuth

from runners.errors import AuthError, CommandError, ConnectError, TlsError
from runners.plan.model import Endpoint
from runners.safe_text import safe

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
_LIMIT = 256 * 1024


def autodiscover_url(endpoint: Endpoint) -> str:
    assert endpoint.host is not None
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    port = "" if endpoint.port in (None, 443) else f":{endpoint.port}"
    return f"https://{host}{port}/autodiscover/autodiscover.xml"


def _auth(endpoint: Endpoint, password: str) -> Any:
    options = endpoint.ews
    assert options is not None
    if options.auth == "ntlm":
        from requests_ntlm import HttpNtlmAuth  # exchangelib's own dependency

        return HttpNtlmAuth(options.service_account, password)
    return HTTPBasicAuth(options.service_account, password)


def discover_url(endpoint: Endpoint, mailbox: str, password: str) -> str:
    """The EWS URL Autodiscover gives for ``mailbox``; raises our errors with the server's words."""
    url = autodiscover_url(endpoint)
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{REQUEST_NS}"><Request>'
        f"<EMailAddress>{_escape(mailbox)}</EMailAddress>"
        f"<AcceptableResponseSchema>{RESPONSE_NS}</AcceptableResponseSchema></Request></Autodiscover>"
    )
    verify: bool | str = endpoint.ca_file or endpoint.tls_verify
    operation = f"Autodiscover {mailbox}"
    try:
        answer = requests.post(
            url,
            data=body.encode("utf-8"),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            auth=_auth(endpoint, password),
            timeout=endpoint.timeout,
            verify=verify,
            allow_redirects=False,
        )
    except requests.exceptions.SSLError as exc:
        raise TlsError(endpoint.address, operation, safe(exc)) from None
    except requests.RequestException as exc:
        raise ConnectError(endpoint.address, operation, safe(exc)) from None
    if answer.status_code == 401:
        account = endpoint.ews.service_account if endpoint.ews else "?"
        raise AuthError(
            endpoint.address, operation, f"401 Unauthorized: the server refused the service account {account}"
        )
    if answer.status_code != 200:
        raise CommandError(
            endpoint.address, operation, f"HTTP {answer.status_code}", str(answer.status_code), status="ERROR"
        )
    return ews_url_of(endpoint, operation, answer.content[:_LIMIT])


def ews_url_of(endpoint: Endpoint, operation: str, content: bytes) -> str:
    try:
        root = ET.fromstring(content)  # noqa: S314 - a bounded answer from the plan's own server
    except ET.ParseError as exc:
        raise CommandError(endpoint.address, operation, f"not XML: {exc}", status="ERROR") from None
    error = root.find(".//{*}Error/{*}Message")
    for kind in ("EXCH", "EXPR"):
        for protocol in root.iter():
            if protocol.tag.endswith("}Protocol") and (protocol.findtext("{*}Type") or "") == kind:
                found = protocol.findtext("{*}EwsUrl")
                if found:
                    return found.strip()
    words = error.text if error is not None and error.text else "the answer names no EwsUrl"
    raise CommandError(endpoint.address, operation, words, status="ERROR")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

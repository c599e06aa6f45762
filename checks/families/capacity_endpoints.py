"""TGT-HTTPS-001: every client access endpoint (EWS, OWA, autodiscover...) answers over verified TLS.

Any HTTP answer counts as answering (EWS and autodiscover say 401 until a client authenticates);
a 5xx is a dead service behind a live front end (blocker), a 404 most likely a wrong URL (warning).
An endpoint that refuses or never answers is a blocker finding "not answering": the check itself
ran. Connections go straight to the endpoint (no proxy from the environment), as a client on the
target network would.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from checks.context import CheckContext
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.tlsprobe import (
    CertInfo,
    cert_info,
    client_context,
    judge,
    presented_certificate,
    probe_timeout,
    verify_failure,
)

CHECK_ID = "TGT-HTTPS-001"
#: Endpoints probed at once (each also holds a per-server slot).
PROBES_AT_ONCE = 8
#: Response headers worth showing as evidence; cookies never are.
_SHOWN_HEADERS = ("server", "www-authenticate", "location", "x-feserver", "x-owa-version", "content-type")


@check(CHECK_ID, "Client access endpoints answer over TLS with a valid certificate", category="capacity")
def client_endpoints(ctx: CheckContext) -> Iterator[Finding]:
    settings = ctx.plan.readiness.capacity
    if not settings.endpoints:
        raise SkipCheck("no [capacity] endpoints in the plan")
    timeout = probe_timeout(ctx.timeout)
    items = list(settings.endpoints.items())
    with ThreadPoolExecutor(max_workers=min(PROBES_AT_ONCE, len(items))) as pool:
        yield from pool.map(lambda item: _probe(ctx, item[0], item[1], timeout), items)


def _probe(ctx: CheckContext, role: str, url: str, timeout: float) -> Finding:
    settings = ctx.plan.readiness.capacity
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    with ctx.server(f"https:{host}:{port}"):
        try:
            with (
                httpx.Client(
                    verify=client_context(settings.ca_file),
                    timeout=timeout,
                    follow_redirects=False,
                    trust_env=False,
                ) as client,
                client.stream("GET", url, headers={"User-Agent": "cutover-readiness"}) as response,
            ):
                cert = _peer_certificate(response)
                status = f"{response.http_version} {response.status_code} {response.reason_phrase}"
                headers = [  # as the server spelled them
                    f"{k.decode('latin-1')}: {v.decode('latin-1')}"
                    for k, v in response.headers.raw
                    if k.decode("latin-1").lower() in _SHOWN_HEADERS
                ]
                code = response.status_code
        except httpx.TimeoutException:
            return _not_answering(role, url, f"no answer within {timeout:.0f} s")
        except httpx.HTTPError as exc:
            tls = _tls_error(exc)
            if tls is None:
                return _not_answering(role, url, str(exc) or type(exc).__name__)
            return _tls_refused(role, url, tls, _inspect(host, port, timeout))
    evidence = "\n".join([status, *headers, cert.describe() if cert else "no certificate details"])
    return _answered(ctx, role, url, code, status, cert, evidence)


def _answered(
    ctx: CheckContext, role: str, url: str, code: int, status: str, cert: CertInfo | None, evidence: str
) -> Finding:
    if cert is None:  # verified, yet no details: say so rather than pass blind
        severity, cert_text = Severity.WARNING, "certificate verified but its details were not readable"
    else:
        severity, cert_text = judge(cert, ctx.plan.readiness.capacity.cert_warn_days)
    observed = f"{url} answered {status}; {cert_text}"
    if code >= 500:
        return Finding(
            CHECK_ID, Severity.BLOCKER, "endpoint", role, f"{role} answers {code}: the service is down",
            observed=observed, expected="an answer below 500 (401 is normal before authentication)",
            evidence=evidence, remediation="Check the service and its back ends behind the front end.",
        )  # fmt: skip
    if severity is Severity.PASS and code == 404:
        return Finding(
            CHECK_ID, Severity.WARNING, "endpoint", role, f"{role} answers 404: wrong URL?",
            observed=observed, expected="the service's own path (e.g. /EWS/Exchange.asmx)", evidence=evidence,
            remediation="Check the URL in [capacity] endpoints against the published client URLs.",
        )  # fmt: skip
    if severity is Severity.PASS:
        return Finding(
            CHECK_ID, Severity.PASS, "endpoint", role, f"{role} answers over TLS ({cert_text})",
            observed=observed, evidence=evidence,
        )  # fmt: skip
    days = ctx.plan.readiness.capacity.cert_warn_days
    return Finding(
        CHECK_ID, severity, "endpoint", role, f"{role}: {cert_text}",
        observed=observed, expected=f"a certificate valid for at least {days} more days",
        evidence=evidence, remediation="Renew the certificate before the cutover and bind it to the endpoint.",
    )  # fmt: skip


def _not_answering(role: str, url: str, why: str) -> Finding:
    return Finding(
        CHECK_ID, Severity.BLOCKER, "endpoint", role, f"{role} not answering",
        observed=f"{url}: {why}", expected="an HTTPS answer", evidence=why,
        remediation="Check DNS, the load balancer and firewalls between clients and the endpoint.",
    )  # fmt: skip


def _tls_refused(role: str, url: str, error: ssl.SSLError, presented: CertInfo | str) -> Finding:
    reason = verify_failure(error)
    what = (
        "certificate not valid" if isinstance(error, ssl.SSLCertVerificationError) else "TLS handshake fails"
    )
    shown = presented.describe() if isinstance(presented, CertInfo) else presented
    return Finding(
        CHECK_ID, Severity.BLOCKER, "endpoint", role, f"{role} {what}: {reason}",
        observed=f"{url}: {what}: {reason}",
        expected="a certificate for the endpoint's name from a trusted CA, not expired",
        evidence=f"{reason}\n{shown}",
        remediation="Install a certificate that names the endpoint, issued by a CA the clients trust "
        "(set [capacity] ca_file for a private CA).",
    )  # fmt: skip


def _peer_certificate(response: httpx.Response) -> CertInfo | None:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    # httpcore hands out the C-level _ssl._SSLSocket, no ssl.SSLSocket: ask for the method itself.
    getpeercert = getattr(ssl_object, "getpeercert", None)
    peer = getpeercert() if callable(getpeercert) else None
    return cert_info(peer) if isinstance(peer, dict) and peer else None


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error under httpx's and httpcore's wrappers, if that is what failed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _inspect(host: str, port: int, timeout: float) -> CertInfo | str:
    def handshake(context: ssl.SSLContext) -> ssl.SSLSocket:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            return context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    return presented_certificate(handshake)

"""TGT-HTTPS-001: every client access endpoint (EWS, OWA, autodiscover...) answers over verified TLS.

Per endpoint one finding about the answer (no key) and three about the certificate (``cert-trust``,
``cert-name``, ``cert-expiry``: ``checks.tlsfindings``), each fault judged on its own; when the
certificate fails, the answer is still asked for without verification, so a dead service behind a
bad certificate shows too. Any HTTP answer counts as answering (EWS and autodiscover say 401 until
a client authenticates); a 5xx is a dead service behind a live front end (blocker), a 404 most
likely a wrong URL (warning). An endpoint that refuses or never answers is a blocker finding "not
answering": the check itself ran. Connections go straight to the endpoint (no proxy from the
environment), as a client on the target network would, to the address ``connect_to`` picks for
the URL's name while TLS and Host keep the name.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from checks.context import CheckContext
from checks.families.connect_to import Target, connect_target
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.tlsfindings import Subject, certificate_findings
from checks.tlsprobe import (
    CertFaults,
    CertInfo,
    Handshake,
    cert_info,
    client_context,
    examine,
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
        for found in pool.map(lambda item: _probe(ctx, item[0], item[1], timeout), items):
            yield from found


def _probe(ctx: CheckContext, role: str, url: str, timeout: float) -> list[Finding]:
    settings = ctx.plan.readiness.capacity
    parts = urlsplit(url)
    port = parts.port or 443
    target = connect_target(ctx, parts.hostname or "")
    subject = Subject(CHECK_ID, "endpoint", role, role, target.name)

    def judged(faults: CertFaults, evidence: str = "") -> list[Finding]:
        return certificate_findings(
            subject, faults, warn_days=settings.cert_warn_days, block_days=settings.cert_block_days,
            evidence=evidence,
        )  # fmt: skip

    with ctx.server(f"https:{target.address}:{port}"):
        try:
            answer = _request(url, target, client_context(settings.ca_file), timeout)
        except httpx.TimeoutException:
            return [_not_answering(role, url, f"no answer within {timeout:.0f} s", target)]
        except httpx.HTTPError as exc:
            tls = _tls_error(exc)
            if tls is None:
                return [_not_answering(role, url, str(exc) or type(exc).__name__, target)]
            if not isinstance(tls, ssl.SSLCertVerificationError):
                return [_tls_refused(role, url, tls, _inspect(target, port, timeout))]
            faults = examine(_handshake(target, port, timeout), settings.ca_file)
            # Every fault of the certificate, and still what the service answers behind it.
            try:
                answer = _request(url, target, _unverified(), timeout)
            except httpx.HTTPError as again:
                return [
                    _not_answering(role, url, str(again) or type(again).__name__, target),
                    *judged(faults),
                ]
            return [
                _answered(role, url, answer, target),
                *judged(faults, answer.evidence),
            ]
    if answer.cert is None:  # verified, yet no details: say so rather than pass blind
        faults = CertFaults("certificate verified but its details were not readable")
    else:
        faults = CertFaults(answer.cert)
    return [
        _answered(role, url, answer, target),
        *judged(faults, answer.evidence),
    ]


@dataclass(frozen=True, slots=True)
class _Answer:
    code: int
    status: str
    cert: CertInfo | None
    evidence: str


def _request(url: str, target: Target, verify: ssl.SSLContext, timeout: float) -> _Answer:
    """GET ``url``, connecting to ``target.address`` with the URL's name in SNI and Host."""
    parts = urlsplit(url)
    headers = {"User-Agent": "cutover-readiness"}
    extensions: dict[str, str] = {}
    if target.address != target.name:
        host = f"[{target.address}]" if ":" in target.address else target.address
        headers["Host"] = parts.netloc.rpartition("@")[2]
        extensions["sni_hostname"] = target.name
        url = parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()
    with (
        httpx.Client(verify=verify, timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream("GET", url, headers=headers, extensions=extensions) as response,
    ):
        status = f"{response.http_version} {response.status_code} {response.reason_phrase}"
        shown = [  # as the server spelled them
            f"{k.decode('latin-1')}: {v.decode('latin-1')}"
            for k, v in response.headers.raw
            if k.decode("latin-1").lower() in _SHOWN_HEADERS
        ]
        evidence = "\n".join(x for x in (target.describe(), status, *shown) if x)
        return _Answer(response.status_code, status, _peer_certificate(response), evidence)


def _unverified() -> ssl.SSLContext:
    blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE
    return blind


def _answered(role: str, url: str, answer: _Answer, target: Target) -> Finding:
    """What the service answers (its certificate is judged apart)."""
    observed = f"{url} answered {answer.status}"
    if answer.code >= 500:
        return Finding(
            CHECK_ID, Severity.BLOCKER, "endpoint", role, f"{role} answers {answer.code}: the service is down",
            observed=observed, expected="an answer below 500 (401 is normal before authentication)",
            evidence=answer.evidence, remediation="Check the service and its back ends behind the front end.",
        )  # fmt: skip
    if answer.code == 404:
        return Finding(
            CHECK_ID, Severity.WARNING, "endpoint", role, f"{role} answers 404: wrong URL?",
            observed=observed, expected="the service's own path (e.g. /EWS/Exchange.asmx)",
            evidence=answer.evidence,
            remediation="Check the URL in [capacity] endpoints against the published client URLs.",
        )  # fmt: skip
    return Finding(
        CHECK_ID, Severity.PASS, "endpoint", role, f"{role} answers {answer.code}",
        observed=observed, evidence=answer.evidence,
    )  # fmt: skip


def _not_answering(role: str, url: str, why: str, target: Target) -> Finding:
    return Finding(
        CHECK_ID, Severity.BLOCKER, "endpoint", role, f"{role} not answering",
        observed=f"{url}: {why}", expected="an HTTPS answer",
        evidence="\n".join(x for x in (target.describe(), why) if x),
        remediation="Check DNS (or [capacity] addresses), the load balancer and firewalls between clients "
        "and the endpoint.",
    )  # fmt: skip


def _tls_refused(role: str, url: str, error: ssl.SSLError, presented: CertInfo | str) -> Finding:
    """The handshake fails for another reason than the certificate (protocol, cipher, a reset)."""
    reason = verify_failure(error)
    shown = presented.describe() if isinstance(presented, CertInfo) else presented
    return Finding(
        CHECK_ID, Severity.BLOCKER, "endpoint", role, f"{role} TLS handshake fails: {reason}",
        observed=f"{url}: TLS handshake fails: {reason}",
        expected="a TLS handshake a current client can complete",
        evidence=f"{reason}\n{shown}",
        remediation="Check the TLS configuration (protocols, ciphers, certificate and key) of the endpoint.",
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


def _handshake(target: Target, port: int, timeout: float) -> Handshake:
    def handshake(context: ssl.SSLContext) -> ssl.SSLSocket:
        sock = socket.create_connection((target.address, port), timeout=timeout)
        try:
            return context.wrap_socket(sock, server_hostname=target.name)
        except BaseException:
            sock.close()
            raise

    return handshake


def _inspect(target: Target, port: int, timeout: float) -> CertInfo | str:
    return presented_certificate(_handshake(target, port, timeout))

"""Server certificates as the readiness checks report them.

A check verifies like a client would (system trust store plus the plan's ``ca_file``, host name
checked). When that fails, ``examine`` looks at the certificate anyway and judges trust, name and
expiry apart (OpenSSL stops at the first fault; an untrusted certificate would hide its expiry),
so the findings say every fault and what the server presented, not only "verify failed".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from checks.model import Severity

#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME (no name in Python's ssl): lets an expired certificate be read.
_NO_CHECK_TIME = 0x200000
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}

#: Opens a connection, does the TLS handshake with the given context and returns the socket.
Handshake = Callable[[ssl.SSLContext], ssl.SSLSocket]


@dataclass(frozen=True, slots=True)
class CertInfo:
    subject: str
    issuer: str
    #: subjectAltName entries as ``DNS:mail.example.com`` / ``IP Address:192.0.2.1``.
    names: tuple[str, ...]
    not_after: dt.datetime

    def days_left(self, now: dt.datetime | None = None) -> float:
        return (self.not_after - (now or dt.datetime.now(dt.UTC))).total_seconds() / 86400

    def describe(self) -> str:
        names = ", ".join(self.names) or "none"
        return (
            f"certificate subject {self.subject}; SAN {names}; issuer {self.issuer}; "
            f"notAfter {self.not_after:%Y-%m-%d %H:%M:%S} UTC"
        )


def cert_info(peer: Mapping[str, object]) -> CertInfo:
    """From ``SSLSocket.getpeercert()`` (the decoded form, only filled in for a verified peer)."""
    not_after = peer.get("notAfter")
    if not isinstance(not_after, str):
        raise ValueError("the certificate has no notAfter")
    san = peer.get("subjectAltName", ())
    names = tuple(
        f"{kind}:{value}"
        for kind, value in (san if isinstance(san, tuple) else ())
        if isinstance(kind, str) and isinstance(value, str)
    )
    return CertInfo(
        subject=_name(peer.get("subject")),
        issuer=_name(peer.get("issuer")),
        names=names,
        not_after=dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), dt.UTC),
    )


def _name(rdns: object) -> str:
    parts: list[str] = []
    for rdn in rdns if isinstance(rdns, tuple) else ():
        for attribute in rdn if isinstance(rdn, tuple) else ():
            if isinstance(attribute, tuple) and len(attribute) == 2:
                key, value = attribute
                parts.append(f"{_SHORT_NAMES.get(str(key), str(key))}={value}")
    return ", ".join(parts) or "(empty)"


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify as a client would: the system's trust store plus the plan's private CA, if any."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def verify_failure(exc: ssl.SSLError) -> str:
    """The reason in OpenSSL's words (``certificate has expired``, ``Hostname mismatch, ...``)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    return str(exc.reason or exc)


def presented_certificate(handshake: Handshake) -> CertInfo | str:
    """The certificate the server presents, read even if it is expired, misnamed or untrusted.

    Two more handshakes: one unverified to fetch it, one that trusts exactly that certificate,
    skipping time and name checks, so that ``getpeercert()`` decodes it. Returns a description of
    what could be learned instead when even that fails.
    """
    der = _fetch(handshake)
    return der if isinstance(der, str) else _decoded(handshake, der)


@dataclass(frozen=True, slots=True)
class CertFaults:
    """Each fault of a certificate judged on its own: one never hides another."""

    #: What the server presented (decoded), or what could be learned when it can't be decoded.
    presented: CertInfo | str
    #: OpenSSL's reason the chain doesn't verify, time left aside ("self-signed certificate").
    untrusted: str | None = None
    #: OpenSSL's reason the certificate doesn't name the host ("Hostname mismatch, ...").
    mismatch: str | None = None


def examine(handshake: Handshake, ca_file: str | None) -> CertFaults:
    """After a failed verification: trust, name and expiry, each on a handshake of its own.

    Trust: the client's trust store with the time check off. Name: a context trusting exactly the
    presented certificate (time off, name on), so only the name can fail. Expiry: the decoded notAfter.
    """
    der = _fetch(handshake)
    if isinstance(der, str):
        return CertFaults(der)
    trust = client_context(ca_file)
    trust.check_hostname = False
    trust.verify_flags |= _NO_CHECK_TIME
    name = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    name.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | _NO_CHECK_TIME
    name.load_verify_locations(cadata=der)
    return CertFaults(_decoded(handshake, der), _refusal(handshake, trust), _refusal(handshake, name))


def _fetch(handshake: Handshake) -> bytes | str:
    blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE
    try:
        with handshake(blind) as sock:
            der = sock.getpeercert(binary_form=True)
    except (OSError, ValueError) as exc:
        return f"the certificate could not be fetched: {exc}"
    return der or "the server presented no certificate"


def _decoded(handshake: Handshake, der: bytes) -> CertInfo | str:
    reader = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    reader.check_hostname = False
    reader.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | _NO_CHECK_TIME
    try:
        reader.load_verify_locations(cadata=der)
        with handshake(reader) as sock:
            peer = sock.getpeercert()
        return cert_info(peer or {})
    except (OSError, ValueError):
        return "certificate SHA-256 " + hashlib.sha256(der).hexdigest()


def _refusal(handshake: Handshake, context: ssl.SSLContext) -> str | None:
    """None when the handshake verifies with ``context``; else OpenSSL's reason."""
    try:
        with handshake(context):
            return None
    except ssl.SSLError as exc:
        return verify_failure(exc)
    except (OSError, ValueError) as exc:
        return f"could not be checked: {exc}"


def judge(
    cert: CertInfo, warn_days: int, now: dt.datetime | None = None, *, block_days: int = 0
) -> tuple[Severity, str]:
    """Days to expiry: expired or closer than ``block_days`` is a blocker, closer than ``warn_days`` a warning."""
    days = cert.days_left(now)
    until = f"{cert.not_after:%Y-%m-%d}"
    if days < 0:
        return Severity.BLOCKER, f"certificate expired {-days:.0f} days ago ({until})"
    if days < block_days:
        return Severity.BLOCKER, f"certificate expires in {days:.0f} days ({until})"
    if days < warn_days:
        return Severity.WARNING, f"certificate expires in {days:.0f} days ({until})"
    return Severity.PASS, f"certificate valid for {days:.0f} more days (until {until})"


def probe_timeout(check_timeout: float) -> float:
    """Seconds for one connect or read: a few of them must fit into the check's own deadline."""
    return max(1.0, min(10.0, check_timeout / 4))

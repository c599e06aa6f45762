"""Three findings for one server certificate: trusted (``cert-trust``), names the host
(``cert-name``), far enough from expiry (``cert-expiry``). Each is judged on its own, so an
untrusted, misnamed and expiring certificate gets three findings; a good one three passes.

Expiry thresholds: ``[capacity] cert_warn_days`` (default 30) and ``cert_block_days`` (default 7).
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.model import Finding, Severity
from checks.tlsprobe import CertFaults, CertInfo, judge

TRUST_KEY, NAME_KEY, EXPIRY_KEY = "cert-trust", "cert-name", "cert-expiry"


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose certificate: the finding's check, object and wording."""

    check_id: str
    object_type: str
    object_id: str
    #: How titles start: "ews", "SMTP hub hub1:25".
    label: str
    #: The name the certificate must carry (SNI and matching), whatever address was connected to.
    host: str


def certificate_findings(
    subject: Subject, faults: CertFaults, *, warn_days: int, block_days: int, evidence: str = ""
) -> list[Finding]:
    presented = faults.presented
    shown = presented.describe() if isinstance(presented, CertInfo) else presented
    evidence = "\n".join(x for x in (evidence, shown) if x)
    return [
        _trust(subject, faults.untrusted, evidence),
        _name(subject, faults.mismatch, evidence),
        _expiry(subject, presented, evidence, warn_days, block_days),
    ]


def _finding(
    subject: Subject, severity: Severity, title: str, key: str, evidence: str, **text: str
) -> Finding:
    return Finding(
        subject.check_id, severity, subject.object_type, subject.object_id, f"{subject.label}: {title}",
        evidence=evidence, key=key, **text,
    )  # fmt: skip


def _trust(subject: Subject, untrusted: str | None, evidence: str) -> Finding:
    if untrusted is None:
        return _finding(subject, Severity.PASS, "certificate chain trusted", TRUST_KEY, evidence,
                        observed="the chain verifies")  # fmt: skip
    return _finding(
        subject, Severity.BLOCKER, f"certificate not trusted: {untrusted}", TRUST_KEY, f"{untrusted}\n{evidence}",
        observed=untrusted, expected="a certificate from a CA the clients trust",
        remediation="Install a certificate from a CA the clients trust (set [capacity] ca_file when the "
        "clients trust a private CA).",
    )  # fmt: skip


def _name(subject: Subject, mismatch: str | None, evidence: str) -> Finding:
    if mismatch is None:
        return _finding(subject, Severity.PASS, f"certificate names {subject.host}", NAME_KEY, evidence,
                        observed=f"valid for {subject.host}")  # fmt: skip
    return _finding(
        subject, Severity.BLOCKER, f"certificate does not name {subject.host}", NAME_KEY, f"{mismatch}\n{evidence}",
        observed=mismatch, expected=f"{subject.host} in the certificate's subjectAltName",
        remediation=f"Install a certificate whose subjectAltName includes {subject.host}.",
    )  # fmt: skip


def _expiry(
    subject: Subject, presented: CertInfo | str, evidence: str, warn_days: int, block_days: int
) -> Finding:
    expected = f"a certificate valid for at least {warn_days} more days"
    if not isinstance(presented, CertInfo):
        return _finding(
            subject, Severity.WARNING, "certificate expiry unknown", EXPIRY_KEY, evidence,
            observed=f"the certificate could not be decoded: {presented}", expected=expected,
        )  # fmt: skip
    severity, text = judge(presented, warn_days, block_days=block_days)
    return _finding(
        subject, severity, text, EXPIRY_KEY, evidence, observed=text, expected=expected,
        remediation="" if severity is Severity.PASS else "Renew the certificate before the cutover.",
    )  # fmt: skip

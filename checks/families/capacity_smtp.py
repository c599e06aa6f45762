"""TGT-SMTP-002: each target SMTP hub greets, speaks EHLO, offers STARTTLS with a valid certificate
and accepts messages as large as the largest one being migrated.

Per hub findings keyed ``tls`` (STARTTLS offered, the handshake completes), ``cert-trust``,
``cert-name`` and ``cert-expiry`` (each fault of the certificate apart: ``checks.tlsfindings``) and
``size``; a hub that refuses, never answers or doesn't greet with 220 gets a single blocker keyed
``connect``. A hub name is connected to at the address ``connect_to`` picks, STARTTLS asking for
the name. Evidence is the transcript: the server's banner and EHLO lines verbatim.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from checks.context import CheckContext
from checks.families.connect_to import connect_target
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.smtpprobe import SmtpProbe, parse_hub, probe_smtp
from checks.survey import Survey, survey
from checks.tlsfindings import Subject, certificate_findings
from checks.tlsprobe import CertFaults, CertInfo, probe_timeout
from checks.volume import exact_bytes

CHECK_ID = "TGT-SMTP-002"
PROBES_AT_ONCE = 8


@check(CHECK_ID, "SMTP hubs greet, offer STARTTLS with a valid certificate, accept large messages",
       category="capacity")  # fmt: skip
def smtp_hubs(ctx: CheckContext) -> Iterator[Finding]:
    settings = ctx.plan.readiness.capacity
    if not settings.smtp_hubs:
        raise SkipCheck("no [capacity] smtp_hubs in the plan")
    timeout = probe_timeout(ctx.timeout)

    def probe(hub: str) -> SmtpProbe:
        host, port = parse_hub(hub)
        target = connect_target(ctx, host)
        with ctx.server(f"smtp:{target.address}:{port}"):
            return probe_smtp(host, port, timeout=timeout, ca_file=settings.ca_file, address=target.address)

    hubs = list(settings.smtp_hubs)
    with ThreadPoolExecutor(max_workers=min(PROBES_AT_ONCE, len(hubs))) as pool:
        probes = pool.map(probe, hubs)  # the hubs talk while the survey (shared, maybe cached) runs
        needs = _size_needs(ctx, survey(ctx))
        for hub, result in zip(hubs, probes, strict=True):
            yield from _findings(ctx, hub, result, needs)


def _size_needs(ctx: CheckContext, surveyed: Survey) -> list[tuple[int, str]]:
    """What SIZE must reach: the largest surveyed message and the plan's target limit, with why."""
    needs: list[tuple[int, str]] = []
    largest = max(
        ((f.largest, f"{m.entry.source}/{f.folder.display}") for m in surveyed.mailboxes for f in m.folders),
        default=(0, ""),
    )
    if largest[0] > 0:
        needs.append((largest[0], f"the largest source message ({largest[1]})"))
    limit = ctx.plan.target.max_message_bytes
    if limit:
        needs.append((limit, "the plan's [target] max_message_bytes"))
    return needs


def _findings(
    ctx: CheckContext, hub: str, probe: SmtpProbe, needs: list[tuple[int, str]]
) -> Iterator[Finding]:
    evidence = "\n".join(probe.transcript) or "(nothing was said)"
    if probe.failure is not None:
        yield Finding(
            CHECK_ID, Severity.BLOCKER, "server", hub, f"SMTP hub {hub} not answering",
            observed=probe.failure, expected="a 220 greeting and a 250 reply to EHLO", evidence=evidence,
            remediation="Check the hub's service, DNS and firewalls between the migration host and the hub.",
            key="connect",
        )  # fmt: skip
        return
    yield from _tls_findings(ctx, hub, probe, evidence)
    yield _size_finding(hub, probe, needs, "\n".join(_banner_and_last_ehlo(probe.transcript)))


def _tls_findings(ctx: CheckContext, hub: str, probe: SmtpProbe, evidence: str) -> Iterator[Finding]:
    """STARTTLS itself (key ``tls``), then the certificate's trust, name and expiry apart."""
    settings = ctx.plan.readiness.capacity
    expected = (
        f"STARTTLS with a valid certificate for {probe.host}, at least {settings.cert_warn_days} more days"
    )
    if probe.address != probe.host:
        evidence = f"connected to {probe.address} for {probe.host}\n{evidence}"
    if not probe.starttls_offered:
        yield Finding(
            CHECK_ID, Severity.BLOCKER, "server", hub, f"SMTP hub {hub} offers no STARTTLS",
            observed="STARTTLS is not among the EHLO keywords", expected=expected, evidence=evidence,
            remediation="Enable STARTTLS with a certificate on the hub's receive connector.", key="tls",
        )  # fmt: skip
        return
    if probe.tls_error is not None:
        shown = probe.presented.describe() if isinstance(probe.presented, CertInfo) else probe.presented
        yield Finding(
            CHECK_ID, Severity.BLOCKER, "server", hub, f"SMTP hub {hub} STARTTLS fails: {probe.tls_error}",
            observed=probe.tls_error, expected=expected,
            evidence="\n".join(x for x in (evidence, shown) if x),
            remediation="Check the hub's TLS setup: its certificate and key must be readable and match.",
            key="tls",
        )  # fmt: skip
        return
    yield Finding(
        CHECK_ID, Severity.PASS, "server", hub, f"SMTP hub {hub} offers STARTTLS",
        observed="STARTTLS offered; its certificate is judged apart (cert-trust, cert-name, cert-expiry)", expected=expected, evidence=evidence, key="tls",
    )  # fmt: skip
    if probe.cert_faults is not None:
        faults = probe.cert_faults
    elif probe.cert is None:
        faults = CertFaults("STARTTLS verified, but the certificate could not be decoded")
    else:
        faults = CertFaults(probe.cert)
    yield from certificate_findings(
        Subject(CHECK_ID, "server", hub, f"SMTP hub {hub}", probe.host), faults,
        warn_days=settings.cert_warn_days, block_days=settings.cert_block_days, evidence=evidence,
    )  # fmt: skip


def _size_finding(hub: str, probe: SmtpProbe, needs: list[tuple[int, str]], evidence: str) -> Finding:
    expected = "; ".join(f"SIZE >= {exact_bytes(n)} ({why})" for n, why in needs) or "a SIZE limit"
    advertised = probe.features.get("size")
    if advertised is None:
        return Finding(
            CHECK_ID, Severity.WARNING, "server", hub, f"SMTP hub {hub} advertises no SIZE",
            observed="SIZE is not among the EHLO keywords: its message size limit is unknown",
            expected=expected, evidence=evidence,
            remediation="Advertise SIZE (RFC 1870) so senders learn the limit before sending.", key="size",
        )  # fmt: skip
    words = advertised.split()
    limit = int(words[0]) if words and words[0].isdigit() else 0
    if limit == 0:  # RFC 1870: SIZE without a number, or 0, means no fixed maximum
        return Finding(
            CHECK_ID, Severity.PASS, "server", hub, f"SMTP hub {hub} sets no fixed size limit",
            observed=f"SIZE {advertised}".rstrip(), expected=expected, evidence=evidence, key="size",
        )  # fmt: skip
    short = [(n, why) for n, why in needs if limit < n]
    if short:
        return Finding(
            CHECK_ID, Severity.BLOCKER, "server", hub, f"SMTP hub {hub} accepts messages up to {exact_bytes(limit)} only",
            observed=f"SIZE {limit} is below " + "; ".join(f"{exact_bytes(n)}, {why}" for n, why in short),
            expected=expected, evidence=evidence,
            remediation="Raise the hub's message size limit (receive connector and transport config) "
            "to at least the largest message users keep.",
            key="size",
        )  # fmt: skip
    if not needs:
        return Finding(
            CHECK_ID, Severity.INFO, "server", hub, f"SMTP hub {hub} accepts up to {exact_bytes(limit)}",
            observed=f"SIZE {limit}; no surveyed message and no [target] max_message_bytes to compare with",
            evidence=evidence, key="size",
        )  # fmt: skip
    return Finding(
        CHECK_ID, Severity.PASS, "server", hub, f"SMTP hub {hub} accepts up to {exact_bytes(limit)}",
        observed=f"SIZE {limit}", expected=expected, evidence=evidence, key="size",
    )  # fmt: skip


def _banner_and_last_ehlo(transcript: list[str]) -> list[str]:
    """The greeting and the EHLO exchange the SIZE was read from (after STARTTLS when there was one)."""
    starts = [i for i, line in enumerate(transcript) if line.lower().startswith("c: ehlo")]
    if not starts:
        return transcript
    end = next(
        (i for i in range(starts[-1] + 1, len(transcript)) if transcript[i].startswith("C: ")),
        len(transcript),
    )
    return [*transcript[:1], *transcript[starts[-1] : end]]

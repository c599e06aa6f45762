"""DNS-MTASTS-007: an enforced MTA-STS policy must list the MX that will receive the mail.

Senders that honour MTA-STS (RFC 8461) refuse to deliver to an MX the policy does not list. Before
the cutover the future (target) MX must be in the policy already, because senders cache it for
``max_age``; after the cutover the MX actually published must be.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from checks.context import CheckContext
from checks.families.dns_common import domains, host, mx_records, resolve, settings, txt_strings
from checks.model import Finding, Severity
from checks.registry import check
from checks.tlsprobe import client_context

MTASTS_ID = "DNS-MTASTS-007"
POLICY_PATH = "/.well-known/mta-sts.txt"
MODES = ("enforce", "testing", "none")
#: A policy is small (RFC 8461 §3.3 lets senders stop at 64 KiB); a slow host must not eat the deadline.
MAX_FETCH_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Policy:
    mode: str
    mx: tuple[str, ...]
    max_age: str


class PolicyError(Exception):
    """The policy announced in DNS cannot be fetched or read (the message says why)."""


def parse_policy(text: str) -> Policy:
    """Read an RFC 8461 §3.2 policy; raise ``PolicyError`` when it is not one."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError(f"version is {fields.get('version')}, not STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in MODES:
        raise PolicyError(f"mode {mode!r} is not enforce, testing or none")
    mx = tuple(host(m) for m in fields.get("mx", []))
    if mode != "none" and not mx:
        raise PolicyError("no mx: line")
    return Policy(mode, mx, (fields.get("max_age") or [""])[0])


def mx_covered(policy_mx: tuple[str, ...], name: str) -> bool:
    """Does a policy ``mx:`` pattern match ``name`` (RFC 8461 §4.1: ``*.`` stands for one label)?

    ``name`` may itself be an fnmatch pattern of the plan (``*.mail.protection.outlook.com``,
    ``mx*.legacy.test``): its first label is then taken as the one label the wildcard stands for.
    """
    first, _, rest = name.partition(".")
    for pattern in policy_mx:
        if pattern == name:
            return True
        if pattern.startswith("*.") and first and pattern[2:] == rest:
            return True
    return False


def fetch_policy(ctx: CheckContext, domain: str) -> tuple[str, str]:
    """GET the policy from ``mta-sts.<domain>``: (its text, how it was fetched), or ``PolicyError``.

    The host is resolved through the plan's resolver, like every other name the checks look at, and
    the connection goes to that address with the host name in SNI and Host: the certificate must be
    valid for ``mta-sts.<domain>`` (checked against the system CAs plus ``[capacity] ca_file``).
    """
    policy_host = f"mta-sts.{domain}"
    answer = resolve(ctx, policy_host, "A")
    if answer.rrset is None:
        answer = resolve(ctx, policy_host, "AAAA")
    if answer.rrset is None:
        raise PolicyError(f"{policy_host} has no address\n{answer.evidence}")
    address = answer.rrset[0].to_text()
    netloc = f"[{address}]" if ":" in address else address
    url = f"https://{netloc}{POLICY_PATH}"
    trust = client_context(ctx.plan.readiness.capacity.ca_file)
    fetched = f"GET https://{policy_host}{POLICY_PATH} (at {address})"
    timeout = min(MAX_FETCH_TIMEOUT, ctx.timeout / 3)
    try:
        with (
            ctx.server(f"https:{address}:443"),
            httpx.Client(verify=trust, timeout=timeout, follow_redirects=False, trust_env=False) as client,
        ):
            response = client.get(
                url, headers={"Host": policy_host}, extensions={"sni_hostname": policy_host}
            )
    except httpx.HTTPError as exc:
        raise PolicyError(f"{fetched}: {type(exc).__name__}: {exc}") from None
    fetched += f" → HTTP {response.status_code}"
    if response.status_code != 200:  # RFC 8461 §3.3: redirects are not followed
        raise PolicyError(f"{fetched}\n{response.text[:500]}")
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "text/plain":
        raise PolicyError(f"{fetched} with Content-Type {media or 'none'}, not text/plain")
    return response.text, fetched


@check(MTASTS_ID, "MTA-STS policy lists the MX that will receive mail", category="dns")
def mta_sts(ctx: CheckContext) -> Iterator[Finding]:
    target_mx = settings(ctx).target_mx if ctx.phase == "pre" else ()
    for domain in domains(ctx):
        yield from _mta_sts_findings(ctx, domain, target_mx)


def _mta_sts_findings(ctx: CheckContext, domain: str, target_mx: tuple[str, ...]) -> Iterator[Finding]:
    txt = resolve(ctx, f"_mta-sts.{domain}", "TXT")
    records = [t for t in txt_strings(txt.rrset) if t.startswith("v=STSv1")] if txt.rrset else []

    def finding(severity: Severity, title: str, key: str = "", evidence: str = "", **text: str) -> Finding:
        shown = f"{txt.evidence}\n{evidence}" if evidence else txt.evidence
        return Finding(MTASTS_ID, severity, "domain", domain, title, key=key, evidence=shown, **text)

    if not records:
        yield finding(
            Severity.INFO, "No MTA-STS policy published", observed=f"no v=STSv1 TXT at _mta-sts.{domain}"
        )
        return
    if len(records) > 1:
        yield finding(
            Severity.WARNING,
            "Several MTA-STS records: senders ignore the policy",
            "record",
            observed=f"{len(records)} v=STSv1 records",
            expected="exactly one (RFC 8461 §3.1)",
            remediation="Keep one record.",
        )
        return
    try:
        text, fetched = fetch_policy(ctx, domain)
        policy = parse_policy(text)
    except PolicyError as exc:
        yield finding(
            Severity.WARNING,
            "MTA-STS policy announced but not usable",
            "policy",
            str(exc),
            observed=str(exc).splitlines()[0],
            expected=f"a valid policy at https://mta-sts.{domain}{POLICY_PATH} with a trusted certificate",
            remediation="Fix the policy host (address, certificate, file), or remove the _mta-sts record.",
        )
        return
    shown = f"{fetched}\n{text.strip()}"
    if policy.mode == "none":
        yield finding(Severity.INFO, "MTA-STS policy mode is none", evidence=shown, observed="mode: none")
        return
    current = [name for _, name in mx_records(resolve(ctx, domain, "MX")) if name]
    needed = list(dict.fromkeys([*current, *target_mx]))
    uncovered = [name for name in needed if not mx_covered(policy.mx, name)]
    if not uncovered:
        yield finding(
            Severity.PASS,
            "MTA-STS policy covers the MX",
            evidence=shown,
            observed=f"mode {policy.mode}; mx: {', '.join(policy.mx)}",
        )
        return
    yield finding(
        Severity.BLOCKER if policy.mode == "enforce" else Severity.WARNING,
        f"MTA-STS policy ({policy.mode}) does not list every MX",
        "mx",
        shown,
        observed=f"policy mx: {', '.join(policy.mx)}; not covered: {', '.join(uncovered)}",
        expected="every current MX" + (" and every target MX pattern" if target_mx else ""),
        remediation=(
            f"Add mx: lines for {', '.join(uncovered)} to the policy, change the id in the "
            f"_mta-sts.{domain} TXT record, and wait max_age ({policy.max_age or '?'} s) before "
            "the cutover: senders keep the cached policy until then."
        ),
    )

"""Readiness of a Microsoft 365 target reached over Microsoft Graph (``[target] type = "graph"``).

* TGT-GAPP-041: the app gets a token, and the token carries the roles the plan's route needs
  (the missing one named).
* TGT-GBOX-042: each target user exists and has a mailbox the app may reach (its mailboxSettings answer).
* TGT-GSIZE-043: each mailbox's largest source message against the largest message the mailbox
  takes. Graph exposes no mailbox's maximum receive size, so the limit is the plan's
  ``max_message_bytes``, else Exchange Online's default (36 MB).
* TGT-GDNS-044: the records Microsoft expects for each domain (serviceConfigurationRecords: MX,
  autodiscover CNAME, SPF include) against live DNS through the plan's resolver: what the cutover
  must make true (a warning before it, a blocker after).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from checks.context import CheckContext
from checks.families.dns_common import domains, evidence, host, phase_severity, resolve, txt_strings
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.survey import survey
from checks.volume import exact_bytes
from runners.connectors.graph_probe import (
    DOMAIN_ROLES,
    IMPORT_ROLE,
    ROUTE_ROLES,
    SETTINGS_ROLES,
    app_token,
    mailbox_settings,
    service_records,
)
from runners.connectors.graph_token import Token
from runners.errors import ProtocolError

APP_ID = "TGT-GAPP-041"
MAILBOX_ID = "TGT-GBOX-042"
SIZE_ID = "TGT-GSIZE-043"
DNS_ID = "TGT-GDNS-044"
#: Exchange Online's default MaxReceiveSize (an admin may raise it to 150 MB per mailbox).
EXO_DEFAULT_RECEIVE = 36 * 1024 * 1024


def _graph_only(ctx: CheckContext) -> None:
    if ctx.plan.target.type != "graph":
        raise SkipCheck(f'the target is {ctx.plan.target.type}: the Graph checks apply to type = "graph"')


def _token(ctx: CheckContext) -> Token:
    return ctx.fact("graph:token", lambda: app_token(ctx.plan.target))


@check(APP_ID, "The Graph app gets a token with the roles its route needs", category="target")
def app_roles(ctx: CheckContext) -> Iterator[Finding]:
    _graph_only(ctx)
    options = ctx.plan.target.graph
    assert options is not None
    app = f"app {options.client_id} in tenant {options.tenant_id}"
    try:
        token = _token(ctx)
    except ProtocolError as exc:
        yield Finding(APP_ID, Severity.BLOCKER, "endpoint", app, "No token for the app",
                      observed=exc.server_text, expected="an app-only token for Microsoft Graph",
                      evidence=str(exc), remediation="Check tenant_id, client_id and the secret or certificate; "
                      "the app registration must have a client secret or the certificate uploaded.")  # fmt: skip
        return
    roles = set(token.roles)
    held = ", ".join(sorted(roles)) or "none"
    missing = [r for r in ROUTE_ROLES[options.route] if r not in roles]
    for role in missing:
        yield Finding(APP_ID, Severity.BLOCKER, "endpoint", app, f"The token lacks {role}",
                      observed=f"roles: {held}", expected=f"{role} (route {options.route})", key=role,
                      remediation=f"Grant the application permission {role} to the app and give admin consent.")  # fmt: skip
    if options.route == "auto" and IMPORT_ROLE not in roles:
        yield Finding(APP_ID, Severity.INFO, "endpoint", app, "Messages will be made by the JSON route",
                      observed=f"roles: {held}", expected=f"{IMPORT_ROLE} for importMime (full MIME kept)",
                      key=IMPORT_ROLE, remediation=f"Grant {IMPORT_ROLE} for importMime; see docs/graph.md "
                      "for how the routes differ.")  # fmt: skip
    for wanted, why in (
        (SETTINGS_ROLES, "the mailbox check (TGT-GBOX-042)"),
        (DOMAIN_ROLES, "the DNS check (TGT-GDNS-044)"),
    ):
        if not roles & set(wanted):
            yield Finding(APP_ID, Severity.WARNING, "endpoint", app, f"The token lacks {wanted[0]}",
                          observed=f"roles: {held}", expected=f"{wanted[0]} for {why}", key=wanted[0],
                          remediation=f"Grant {wanted[0]} (read-only) so that readiness can check this.")  # fmt: skip
    if not missing:
        yield Finding(APP_ID, Severity.PASS, "endpoint", app, f"Token carries the roles route {options.route} needs",
                      observed=f"roles: {held}")  # fmt: skip


@check(MAILBOX_ID, "Each target user has a mailbox the app may reach", category="target")
def mailboxes_exist(ctx: CheckContext) -> Iterator[Finding]:
    _graph_only(ctx)
    if not ctx.plan.mailboxes:
        raise SkipCheck("the plan lists no mailboxes")
    _token(ctx)  # no token: the app check says why, this one errors with the same words
    for entry in ctx.plan.mailboxes:
        with ctx.server(f"target:{ctx.plan.target.address}"):
            status, _body, words = mailbox_settings(ctx.plan.target, entry.target)
        yield _mailbox_finding(entry.target, status, words)


def _mailbox_finding(user: str, status: int, words: str) -> Finding:
    if status == 200:
        return Finding(
            MAILBOX_ID, Severity.PASS, "mailbox", user, "Mailbox present", observed="mailboxSettings answered"
        )
    if status == 403:
        return Finding(MAILBOX_ID, Severity.BLOCKER, "mailbox", user, "The app may not reach this mailbox",
                       observed=words, expected="mailboxSettings answered", evidence=words,
                       remediation="Grant MailboxSettings.Read and Mail.ReadWrite, and put the mailbox inside the "
                       "app's scope (RBAC for Applications in Exchange Online).")  # fmt: skip
    if status == 404:
        return Finding(MAILBOX_ID, Severity.BLOCKER, "mailbox", user, "No such user or no mailbox",
                       observed=words, expected="a user with an Exchange Online mailbox", evidence=words,
                       remediation="Create the user and assign a licence with Exchange Online.")  # fmt: skip
    return Finding(MAILBOX_ID, Severity.WARNING, "mailbox", user, "Mailbox could not be checked",
                   observed=words, evidence=words)  # fmt: skip


@check(
    SIZE_ID,
    "No source message exceeds what the Microsoft 365 mailbox accepts",
    category="target",
    phase="pre",
)
def largest_message(ctx: CheckContext) -> Iterator[Finding]:
    _graph_only(ctx)
    configured = ctx.plan.target.max_message_bytes
    limit = configured or EXO_DEFAULT_RECEIVE
    where = (
        "the plan's [target] max_message_bytes" if configured else "Exchange Online's default MaxReceiveSize"
    )
    for box in survey(ctx).mailboxes:
        if box.error:
            continue  # the source checks say why it could not be surveyed
        user = box.entry.target
        observed = f"largest source message {exact_bytes(box.largest)}"
        expected = f"at most {exact_bytes(limit)} ({where}; Graph doesn't expose a mailbox's own limit)"
        if box.largest > limit:
            yield Finding(SIZE_ID, Severity.BLOCKER, "mailbox", user, "Source messages larger than the mailbox takes",
                          observed=observed, expected=expected,
                          remediation="Raise the mailbox's MaxReceiveSize (Set-Mailbox, up to 150 MB) and set "
                          "max_message_bytes to match, or accept that these messages are skipped.")  # fmt: skip
        else:
            yield Finding(SIZE_ID, Severity.PASS, "mailbox", user, "Every message fits", observed=observed,
                          expected=expected)  # fmt: skip


@check(DNS_ID, "The domain's DNS has the records Microsoft 365 expects", category="target")
def service_dns(ctx: CheckContext) -> Iterator[Finding]:
    _graph_only(ctx)
    names = domains(ctx)
    _token(ctx)
    for domain in names:
        status, records, words = service_records(ctx.plan.target, domain)
        if status != 200:
            yield Finding(DNS_ID, Severity.WARNING, "domain", domain, "Microsoft's expected records could not be read",
                          observed=words, evidence=words, key="records",
                          remediation="Add and verify the domain in the tenant; grant Domain.Read.All.")  # fmt: skip
            continue
        for record in records:
            if str(record.get("supportedService", "")).lower() != "email" or record.get("isOptional"):
                continue
            finding = _record_finding(ctx, domain, record)
            if finding is not None:
                yield finding


def _record_finding(ctx: CheckContext, domain: str, record: dict[str, Any]) -> Finding | None:
    kind = str(record.get("recordType", ""))
    label = host(record.get("label") or domain)
    if kind == "Mx":
        want = host(record.get("mailExchange", ""))
        answer = resolve(ctx, label, "MX")
        have = sorted(host(r.exchange) for r in answer.rrset or ())
        ok, what = want in have, f"MX {label}"
        observed, expected = ", ".join(have) or "no MX", want
    elif kind == "CName":
        want = host(record.get("canonicalName", ""))
        answer = resolve(ctx, label, "CNAME")
        have = [host(r.target) for r in answer.rrset or ()]
        ok, what = want in have, f"CNAME {label}"
        observed, expected = ", ".join(have) or "no CNAME", want
    elif kind == "Txt" and str(record.get("text", "")).lower().startswith("v=spf1"):
        includes = [t for t in str(record["text"]).split() if t.lower().startswith("include:")]
        answer = resolve(ctx, label, "TXT")
        spf = [t for t in txt_strings(answer.rrset) if t.lower().startswith("v=spf1")] if answer.rrset else []
        terms = {t.lower() for t in " ".join(spf).split()}
        ok, what = bool(spf) and all(i.lower() in terms for i in includes), f"SPF {label}"
        observed, expected = (spf[0] if spf else "no SPF record"), " ".join(includes)
    else:
        return None
    if ok:
        return Finding(DNS_ID, Severity.PASS, "domain", domain, f"{what} as Microsoft expects", observed=observed,
                       key=f"{kind}:{label}", evidence=evidence(answer))  # fmt: skip
    return Finding(DNS_ID, phase_severity(ctx), "domain", domain, f"{what} is not what Microsoft expects",
                   observed=observed, expected=expected, key=f"{kind}:{label}", evidence=evidence(answer),
                   remediation=f"At the cutover, publish {what} → {expected} (serviceConfigurationRecords).")  # fmt: skip

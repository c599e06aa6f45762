"""The Exchange Server target over EWS (``[target] type = "ews"``), before a wave:

- TGT-EWS-031: Autodiscover, asked of the plan's host for each target domain, gives the EWS URL;
- TGT-EWS-032: the service account really authenticates (an EWS answer, not only no 401);
- TGT-EWS-033: impersonation works on every mailbox of the plan, and each target mailbox exists;
- TGT-EWS-034: MailTips give each mailbox's maximum message size and whether it is full: the
  largest source message against that size and against the EWS request limit (MIME in base64);
- TGT-EWS-035: folder names Exchange reserves (Calendar, Outbox...) or takes for another folder
  (names differ only in case): what the folder plan renames, and why.

One probe per mailbox (``ctx.fact``): it opens the mailbox as the engine will (the same session,
the same folder tree), under the ``[checks] per_server`` cap. Evidence is the server's own words.
Quota: EWS has no documented read of a mailbox's quota (that is Get-Mailbox in the Exchange
shell); MailboxFull says whether it is full now, and TGT-QUOTA-003 compares the volume with the
plan's ``[capacity] mailbox_quota_bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from checks.context import CheckContext
from checks.model import Finding, Severity
from checks.registry import SkipCheck, check
from checks.survey import MailboxSurvey, survey
from checks.volume import exact_bytes
from runners.connectors.credentials import user_password
from runners.connectors.ews_items import ITEM_OVERHEAD, REQUEST_OVERHEAD
from runners.connectors.ews_target import EwsTarget, open_session
from runners.errors import AuthError, MailboxFatal, MigrationError
from runners.folders import plan_folders
from runners.model import FolderInfo, TargetLayout
from runners.plan.model import MailboxEntry, Plan

AUTODISCOVER_ID = "TGT-EWS-031"
AUTH_ID = "TGT-EWS-032"
MAILBOX_ID = "TGT-EWS-033"
SIZE_ID = "TGT-EWS-034"
FOLDERS_ID = "TGT-EWS-035"


@dataclass(slots=True)
class EwsProbe:
    entry: MailboxEntry
    session: EwsTarget | None = None
    layout: TargetLayout | None = None
    #: Why the mailbox could not be opened: the server's words, and the kind (AuthError, MailboxFatal...).
    error: str | None = None
    error_kind: str | None = None
    error_code: str | None = None
    tips: tuple[int | None, bool | None] | str | None = None
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _ews_only(ctx: CheckContext) -> Plan:
    if ctx.plan.target.type != "ews":
        raise SkipCheck(f"the target is {ctx.plan.target.type}: its own target checks apply")
    if not ctx.plan.mailboxes:
        raise SkipCheck("the plan lists no mailboxes")
    return ctx.plan


def probes(ctx: CheckContext) -> list[EwsProbe]:
    return ctx.fact("ews-probes", lambda: _probe_all(ctx))


def _probe_all(ctx: CheckContext) -> list[EwsProbe]:
    out = [_probe(ctx, entry) for entry in ctx.plan.mailboxes]
    working = [p for p in out if p.session is not None]
    if working:
        assert working[0].session is not None
        with ctx.server(f"target:{ctx.plan.target.address}"):
            try:
                tips = working[0].session.mail_tips([p.entry.target for p in out])
            except MigrationError as exc:
                tips = {p.entry.target: str(exc) for p in out}
        for probe in out:
            probe.tips = tips.get(probe.entry.target)
    for probe in out:
        if probe.session is not None:
            probe.session.close()
    return out


def _probe(ctx: CheckContext, entry: MailboxEntry) -> EwsProbe:
    probe = EwsProbe(entry)
    try:
        with ctx.server(f"target:{ctx.plan.target.address}"):
            session = open_session(ctx.plan.target, entry)
            assert isinstance(session, EwsTarget)
            probe.layout = session.layout()
            probe.session = session
    except MigrationError as exc:
        probe.error = str(exc)
        probe.error_kind = type(exc).__name__
        probe.error_code = getattr(exc, "code", None)
    return probe


@check(
    AUTODISCOVER_ID, "Autodiscover gives the EWS URL for each target domain", category="target", phase="pre"
)
def autodiscover(ctx: CheckContext) -> Iterator[Finding]:
    plan = _ews_only(ctx)
    options = plan.target.ews
    assert options is not None and plan.target.host is not None
    from runners.connectors.ews_discover import autodiscover_url, discover_url

    planned = options.service_url(plan.target.host, plan.target.port)
    password = user_password(plan.target, options.service_account, None) or ""
    first: dict[str, MailboxEntry] = {}
    for entry in plan.mailboxes:
        first.setdefault(entry.target.rpartition("@")[2].lower(), entry)
    for domain, entry in first.items():
        try:
            with ctx.server(f"target:{plan.target.address}"):
                found = discover_url(plan.target, entry.target, password)
        except MigrationError as exc:
            severity = Severity.BLOCKER if options.autodiscover and not options.url else Severity.WARNING
            yield Finding(
                AUTODISCOVER_ID, severity, "domain", domain, "Autodiscover gives no EWS URL",
                observed=str(exc), expected=f"an EwsUrl from {autodiscover_url(plan.target)} for {entry.target}",
                evidence=str(exc),
                remediation="Publish Autodiscover on the Exchange server (the virtual directory's "
                "InternalUrl/ExternalUrl), or give the plan's [target] ews_url.",
            )  # fmt: skip
            continue
        same = found.rstrip("/").lower() == planned.rstrip("/").lower()
        yield Finding(
            AUTODISCOVER_ID, Severity.PASS if same or options.autodiscover else Severity.WARNING, "domain", domain,
            "Autodiscover gives the EWS URL" if same or options.autodiscover else "Autodiscover gives another EWS URL",
            observed=found, expected=planned, evidence=f"POX Autodiscover for {entry.target}: EwsUrl {found}",
            remediation="" if same else "Check which URL is right; the run uses the plan's.",
        )  # fmt: skip


@check(AUTH_ID, "The service account authenticates on EWS", category="target", phase="pre")
def service_account(ctx: CheckContext) -> Iterator[Finding]:
    plan = _ews_only(ctx)
    options = plan.target.ews
    assert options is not None
    results = probes(ctx)
    refused = [
        p
        for p in results
        if p.error_kind == AuthError.__name__ or (p.error_kind or "").endswith("SecretError")
    ]
    answered = [p for p in results if p.session is not None or p.error_kind == MailboxFatal.__name__]
    server = plan.target.address
    if answered:
        proof = answered[0]
        yield Finding(
            AUTH_ID, Severity.PASS, "server", server, f"{options.service_account} authenticates",
            observed=f"EWS answered {proof.entry.target}'s folders as {options.service_account} ({options.auth})"
            if proof.session else f"EWS answered as {options.service_account}: {proof.error}",
        )  # fmt: skip
    elif refused:
        yield Finding(
            AUTH_ID, Severity.BLOCKER, "server", server, f"{options.service_account} does not authenticate",
            observed=refused[0].error or "", evidence=refused[0].error or "",
            expected=f"an EWS answer to {options.service_account} ({options.auth})",
            remediation="Check the service account's name and password reference, that it is not locked, "
            f"and that the EWS virtual directory accepts {options.auth} authentication.",
        )  # fmt: skip
    else:
        yield Finding(
            AUTH_ID, Severity.BLOCKER, "server", server, "EWS could not be asked",
            observed=results[0].error or "", evidence="\n".join(p.error or "" for p in results[:5]),
            remediation="Check the target's host, port, TLS trust (ca_file) and the firewalls on the way.",
        )  # fmt: skip


@check(
    MAILBOX_ID,
    "Impersonation works on every mailbox, and each mailbox exists",
    category="target",
    phase="pre",
)
def mailboxes(ctx: CheckContext) -> Iterator[Finding]:
    plan = _ews_only(ctx)
    options = plan.target.ews
    assert options is not None
    access = "impersonation" if options.impersonation else "delegate access"
    for probe in probes(ctx):
        mailbox = probe.entry.target
        if probe.session is not None:
            yield Finding(
                MAILBOX_ID, Severity.PASS, "mailbox", mailbox, f"Opens with {access}",
                observed=f"{options.service_account} read the folders of {mailbox}",
            )  # fmt: skip
            continue
        missing = probe.error_code == "ErrorNonExistentMailbox"
        yield Finding(
            MAILBOX_ID, Severity.BLOCKER, "mailbox", mailbox,
            "The target mailbox does not exist" if missing else f"Cannot open the mailbox with {access}",
            observed=probe.error or "", evidence=probe.error or "", key=probe.error_code or "",
            expected=f"{options.service_account} opens {mailbox} with {access}",
            remediation="Create the mailbox (or fix the target address in the mailbox list)." if missing else
            "Give the service account the ApplicationImpersonation role with a scope that holds this mailbox "
            "(New-ManagementRoleAssignment -Role ApplicationImpersonation).",
        )  # fmt: skip


@check(
    SIZE_ID,
    "Every source message fits the mailbox's size limit and one EWS request",
    category="target",
    phase="pre",
)
def sizes(ctx: CheckContext) -> Iterator[Finding]:
    plan = _ews_only(ctx)
    options = plan.target.ews
    assert options is not None
    request_fit = (options.request_limit_bytes - REQUEST_OVERHEAD - ITEM_OVERHEAD) * 3 // 4
    boxes: dict[str, MailboxSurvey] = {b.entry.target: b for b in survey(ctx).mailboxes}
    for probe in probes(ctx):
        mailbox = probe.entry.target
        box = boxes.get(mailbox)
        if isinstance(probe.tips, str) or probe.tips is None:
            yield Finding(
                SIZE_ID, Severity.INFO, "mailbox", mailbox, "MailTips not available",
                observed=probe.tips or probe.error or "no answer", evidence=probe.tips or probe.error or "",
            )  # fmt: skip
            continue
        limit, full = probe.tips
        if full:
            yield Finding(
                SIZE_ID, Severity.BLOCKER, "mailbox", mailbox, "The target mailbox is full", key="full",
                observed="MailTips: MailboxFull true", expected="room for the migrated mail",
                remediation="Raise the mailbox's quota (ProhibitSendReceiveQuota) before the wave.",
            )  # fmt: skip
        if box is None or box.error is not None:
            yield Finding(
                SIZE_ID, Severity.INFO, "mailbox", mailbox, "Source sizes unknown", key="size",
                observed=box.error if box is not None and box.error else "not surveyed",
            )  # fmt: skip
            continue
        caps = [
            (
                request_fit,
                f"the EWS request limit of {exact_bytes(options.request_limit_bytes)} (MIME in base64)",
            )
        ]
        if limit is not None:
            caps.append((limit, f"the mailbox's MaxMessageSize {exact_bytes(limit)} (MailTips)"))
        cap, why = min(caps)
        largest = box.largest
        over = sorted((m.size for f in box.folders for m in f.metas if m.size > cap), reverse=True)
        if over:
            yield Finding(
                SIZE_ID, Severity.BLOCKER, "mailbox", mailbox, f"{len(over)} message(s) too big for Exchange", key="size",
                observed=f"largest {exact_bytes(largest)}", expected=f"every message at most {exact_bytes(cap)}: {why}",
                evidence="\n".join(why for _, why in caps),
                remediation="Raise the mailbox's MaxReceiveSize (and the EWS maxAllowedContentLength) for the "
                "migration, or accept that these messages are skipped with their reason.",
            )  # fmt: skip
        else:
            yield Finding(
                SIZE_ID, Severity.PASS, "mailbox", mailbox, "Every message fits", key="size",
                observed=f"largest {exact_bytes(largest)}", expected=f"at most {exact_bytes(cap)}: {why}",
            )  # fmt: skip


@check(FOLDERS_ID, "Folder names suit Exchange (reserved names, names that differ only in case)", category="target",
       phase="pre")  # fmt: skip
def folder_names(ctx: CheckContext) -> Iterator[Finding]:
    plan = _ews_only(ctx)
    boxes: dict[str, MailboxSurvey] = {b.entry.target: b for b in survey(ctx).mailboxes}
    for probe in probes(ctx):
        mailbox = probe.entry.target
        box = boxes.get(mailbox)
        if probe.layout is None or box is None or box.error is not None:
            continue  # TGT-EWS-033 or the source checks say why
        folders: list[FolderInfo] = [f.folder for f in box.folders]
        renamed = [
            m for m in plan_folders(folders, plan.folders, probe.layout) if m.excluded is None and m.notes
        ]
        for mapping in renamed:
            yield Finding(
                FOLDERS_ID, Severity.WARNING, "folder", mailbox, f"{mapping.source.display} is renamed on Exchange",
                key=mapping.source.display, observed=f"{mapping.source.display} → {mapping.target_wire}",
                evidence="\n".join(mapping.notes),
                remediation="Nothing to do if the new name suits the users; else set [folders] rename in the plan.",
            )  # fmt: skip
        if not renamed:
            yield Finding(
                FOLDERS_ID, Severity.PASS, "mailbox", mailbox, "Every folder keeps its name",
                observed=f"{len(folders)} folder(s)",
            )  # fmt: skip

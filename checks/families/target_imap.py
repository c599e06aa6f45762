"""The IMAP target, per mailbox: it logs in (TGT-LOGIN-021), takes the folder plan's folders
(TGT-CREATE-022), and the canary accepts an APPEND that is then removed (TGT-APPEND-023).

All three read one probe per mailbox (``checks.targetprobe``): one target login per mailbox per run,
under the ``[checks] per_server`` cap. Evidence is the server's own words.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.canary import canary
from checks.context import CheckContext
from checks.model import Finding, Severity
from checks.registry import check
from checks.targetprobe import TargetProbe, imap_target_probes
from runners.errors import MigrationError

LOGIN_ID = "TGT-LOGIN-021"
CREATE_ID = "TGT-CREATE-022"
APPEND_ID = "TGT-APPEND-023"

_LOGIN_REMEDIATION = {
    "AuthError": "Create the mailbox on the target, or give the migration account access to it "
    "(master user, proxy or admin rights); check the target address in the mailbox list.",
    "config": "Fix the password reference for this mailbox (plan or mailbox list column).",
}
_CONNECT_REMEDIATION = "Check the target's host, port, TLS settings and the firewalls on the way."


@check(LOGIN_ID, "Every mailbox logs in on the target", category="target")
def target_logins(ctx: CheckContext) -> Iterator[Finding]:
    for probe in imap_target_probes(ctx):
        mailbox = probe.entry.target
        if probe.login_error is None:
            yield Finding(
                LOGIN_ID, Severity.PASS, "mailbox", mailbox, "Logs in on the target",
                observed=f"logged in on {probe.server} as {probe.login}",
            )  # fmt: skip
            continue
        kind = probe.login_error_kind or ""
        yield Finding(
            LOGIN_ID, Severity.BLOCKER, "mailbox", mailbox, "Cannot log in on the target",
            observed=probe.login_error, expected=f"a login on {probe.server} as {probe.login}",
            evidence=probe.login_error,
            remediation=_LOGIN_REMEDIATION.get(kind, _CONNECT_REMEDIATION),
        )  # fmt: skip


@check(CREATE_ID, "Every planned folder can be created on the target", category="target")
def target_folders(ctx: CheckContext) -> Iterator[Finding]:
    for probe in imap_target_probes(ctx):
        yield from _folder_findings(probe)


def not_probed(check_id: str, what: str, probe: TargetProbe) -> Finding | None:
    """The finding of a mailbox whose ``what`` wasn't probed because it couldn't log in; None if it did."""
    if probe.login_error is None:
        return None
    return Finding(
        check_id, Severity.INFO, "mailbox", probe.entry.target, f"{what} not probed: no login (see {LOGIN_ID})",
        observed=probe.login_error,
    )  # fmt: skip


def _folder_findings(probe: TargetProbe) -> Iterator[Finding]:
    mailbox = probe.entry.target
    if (no_login := not_probed(CREATE_ID, "Folders", probe)) is not None:
        yield no_login
        return
    if probe.folders is None:
        yield Finding(
            CREATE_ID, Severity.INFO, "mailbox", mailbox, "Folders not probed: the source's folders are unknown",
            observed=probe.broken or probe.folders_unknown, evidence=probe.broken or probe.folders_unknown,
        )  # fmt: skip
        return
    refused = [f for f in probe.folders if f.refused is not None]
    for folder in refused:
        yield Finding(
            CREATE_ID, Severity.BLOCKER, "folder", f"{mailbox}/{folder.source}",
            f"The target refuses to create {folder.wire}",
            observed=folder.refused or "", expected=f"CREATE {folder.wire} succeeds",
            evidence=folder.refused or "", key=folder.wire,
            remediation="Rename the folder in [folders] rename (or exclude it), or change the target's "
            "folder policy (ACL, reserved names, name length) for the migration account.",
        )  # fmt: skip
    if probe.left_behind:
        yield Finding(
            CREATE_ID, Severity.WARNING, "mailbox", mailbox, "Probe folders left behind on the target",
            observed="; ".join(probe.left_behind), evidence="\n".join(probe.left_behind), key="cleanup",
            remediation="Delete the listed folders by hand if the migration did not put them there.",
        )  # fmt: skip
    if probe.broken is not None:
        yield Finding(
            CREATE_ID, Severity.WARNING, "mailbox", mailbox, "Folder probe broke off",
            observed=probe.broken, evidence=probe.broken, key="broken",
            remediation="Run the check again; if it persists, look at the target's log for this mailbox.",
        )  # fmt: skip
    elif not refused:
        created = sorted(f.wire for f in probe.folders if not f.existed)
        existing = sorted(f.wire for f in probe.folders if f.existed)
        yield Finding(
            CREATE_ID, Severity.PASS, "mailbox", mailbox,
            f"All {len(probe.folders)} planned folders can be created or exist",
            observed=f"created and removed again: {', '.join(created) or 'none'}; "
            f"already there: {', '.join(existing) or 'none'}",
        )  # fmt: skip


@check(APPEND_ID, "The canary mailbox accepts an APPEND (removed again)", category="target")
def canary_append(ctx: CheckContext) -> Iterator[Finding]:
    probes = imap_target_probes(ctx)
    chosen = canary(ctx.plan)
    (probe,) = [p for p in probes if p.entry is chosen]
    mailbox = chosen.target
    if probe.login_error is not None:
        raise MigrationError(f"the canary {mailbox} could not log in on the target: {probe.login_error}")
    append = probe.append
    if append is None:
        raise MigrationError(f"the canary {mailbox}'s probe broke off: {probe.broken}")
    evidence = "\n".join(append.transcript)
    if append.refused is not None:
        over = append.code == "OVERQUOTA"
        yield Finding(
            APPEND_ID, Severity.BLOCKER, "mailbox", mailbox, "The canary refuses an APPEND",
            observed=append.refused, expected="APPEND to INBOX succeeds", evidence=evidence, key="append",
            remediation="Raise the mailbox's quota on the target." if over else
            "Check the target's APPEND limits, quota and permissions for the migration account.",
        )  # fmt: skip
        return
    if append.left is not None or probe.broken is not None:
        why = append.left or probe.broken or ""
        yield Finding(
            APPEND_ID, Severity.WARNING, "mailbox", mailbox, "The canary's probe message was not removed",
            observed=why, expected="the probe message removed by UID EXPUNGE", evidence=evidence, key="remove",
            remediation='Delete the message "cutover readiness probe" from the canary\'s INBOX by hand.',
        )  # fmt: skip
        return
    yield Finding(
        APPEND_ID, Severity.PASS, "mailbox", mailbox, "The canary accepts an APPEND, removed again",
        observed=f"UID {append.uid} appended to INBOX and expunged", evidence=evidence, key="append",
    )  # fmt: skip

"""One session per target mailbox, as the engine opens it, for the IMAP target checks.

Per mailbox of the plan: log in with the engine's own opener (``runners.engine.sessions.
open_target``: the adapter registry, ``imap_login``, master or per-user password); create every
folder the folder plan (``runners.folders.plan_folders``) puts there that doesn't exist yet, with
the engine's own ``create_folder``, and delete again what the probe created; on the canary mailbox
(``checks.canary``) APPEND one small message to INBOX and remove exactly that one (UID STORE
\\Deleted, UID EXPUNGE; without UIDPLUS a plain EXPUNGE, only when no other message of the user
is flagged \\Deleted; without APPENDUID found again by its Message-ID among the UIDs from UIDNEXT
on). Every mailbox's INBOX is also SELECTed once, for the flags its PERMANENTFLAGS say a copy
keeps (``checks.families.target_flags``). Computed once per check run (``ctx.fact``) and shared by
the checks of ``checks.families.target_imap`` and ``target_flags``.

Leaving nothing behind: only folders that the LIST before the probe didn't show and that are
still empty (STATUS MESSAGES 0) are deleted and unsubscribed; anything else is reported as left
behind. Don't run the target checks while a wave copies into the same mailboxes.
"""

from __future__ import annotations

import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate

from checks.canary import canary
from checks.context import CheckContext
from checks.registry import SkipCheck
from checks.survey import survey
from runners.connectors.imap_common import list_folders
from runners.connectors.imap_login import login_name
from runners.connectors.imap_target import ImapTarget
from runners.engine.sessions import open_target
from runners.errors import CommandError, MigrationError, ProtocolError
from runners.folders import plan_folders
from runners.imap.parse import fetch_meta
from runners.model import AppendItem, FolderInfo
from runners.plan.model import MailboxEntry

#: Mailboxes probed at once (each holds one target connection; ``[checks] per_server`` still caps).
PROBE_WORKERS = 8
_PERMANENTFLAGS = re.compile(r"\[PERMANENTFLAGS \(([^)]*)\)", re.IGNORECASE)
#: The folder the canary's probe message goes to: every IMAP mailbox has one (RFC 3501 5.1).
APPEND_FOLDER = "INBOX"


@dataclass(slots=True)
class FolderProbe:
    wire: str  # the target's name for it, as the folder plan makes it
    source: str  # the source folder it comes from (display name)
    existed: bool = False
    #: The server's words when CREATE was refused.
    refused: str | None = None


@dataclass(slots=True)
class AppendProbe:
    uid: str | None = None
    #: The server's words when APPEND was refused (None: accepted).
    refused: str | None = None
    code: str | None = None
    #: Why the probe message is still there (None: removed).
    left: str | None = None
    #: Our commands and the server's answers, for the evidence.
    transcript: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PermanentFlags:
    """What SELECT INBOX said of the flags a message keeps (RFC 3501 7.1: PERMANENTFLAGS)."""

    #: False when the server sent no PERMANENTFLAGS (then every flag may be set, RFC 3501 7.1).
    announced: bool
    #: The flags named, ``\\*`` (new keywords may be created) among them when it is there.
    flags: tuple[str, ...]
    #: The server's own line.
    line: str


@dataclass(slots=True)
class TargetProbe:
    entry: MailboxEntry
    login: str
    server: str
    #: Why the login failed, in the server's words, and the error's kind (AuthError, ConnectError ...).
    login_error: str | None = None
    login_error_kind: str | None = None
    #: None when the folders were not probed; ``folders_unknown`` says why.
    folders: list[FolderProbe] | None = None
    folders_unknown: str = ""
    #: Folders the probe created and could not remove, with why.
    left_behind: list[str] = field(default_factory=list)
    append: AppendProbe | None = None
    #: INBOX's PERMANENTFLAGS (None when not probed; ``flags_error`` says why when SELECT failed).
    permanent: PermanentFlags | None = None
    flags_error: str | None = None
    #: The connection broke or a command failed after the login: the server's words.
    broken: str | None = None


def target_probes(ctx: CheckContext) -> list[TargetProbe]:
    """Every mailbox's probe, computed once per run for every check that asks."""
    return ctx.fact("target-probes", lambda: _probe_all(ctx))


def imap_target_probes(ctx: CheckContext) -> list[TargetProbe]:
    """The probes, for a check of IMAP targets only: skipped for another target or no mailboxes."""
    kind = ctx.plan.target.type
    if kind != "imap":
        raise SkipCheck(f"the target is {kind}: its own target checks apply")
    if not ctx.plan.mailboxes:
        raise SkipCheck("the plan lists no mailboxes")
    return target_probes(ctx)


def _probe_all(ctx: CheckContext) -> list[TargetProbe]:
    chosen = canary(ctx.plan)
    folders, unknown = _source_folders(ctx)
    entries = list(ctx.plan.mailboxes)

    def one(entry: MailboxEntry) -> TargetProbe:
        key = (entry.source, entry.target)
        return probe_mailbox(ctx, entry, folders.get(key), unknown.get(key, ""), entry is chosen)

    with ThreadPoolExecutor(max_workers=max(1, min(PROBE_WORKERS, len(entries)))) as pool:
        return list(pool.map(one, entries))


def _source_folders(
    ctx: CheckContext,
) -> tuple[dict[tuple[str, str], list[FolderInfo]], dict[tuple[str, str], str]]:
    """The source's folders per mailbox from the survey, and why they are unknown where they are."""
    try:
        surveyed = survey(ctx)
    except (ProtocolError, MigrationError) as exc:
        reason = f"the source survey failed: {exc}"
        return {}, {(e.source, e.target): reason for e in ctx.plan.mailboxes}
    folders: dict[tuple[str, str], list[FolderInfo]] = {}
    unknown: dict[tuple[str, str], str] = {}
    for box in surveyed.mailboxes:
        key = (box.entry.source, box.entry.target)
        if box.error is not None:
            unknown[key] = f"the source mailbox could not be surveyed: {box.error}"
        else:
            folders[key] = [f.folder for f in box.folders]
    return folders, unknown


def probe_mailbox(
    ctx: CheckContext, entry: MailboxEntry, folders: list[FolderInfo] | None, unknown: str, canary: bool
) -> TargetProbe:
    endpoint = ctx.plan.target
    login = login_name(endpoint, entry.target)
    if endpoint.auth == "master" and not endpoint.login_template:
        login += f" (SASL PLAIN as master user {endpoint.master_user})"
    out = TargetProbe(entry, login, endpoint.address)
    with ctx.server(f"target:{endpoint.address}"):
        try:
            session = open_target(endpoint, entry)
        except ProtocolError as exc:
            out.login_error, out.login_error_kind = str(exc), type(exc).__name__
            return out
        except MigrationError as exc:  # a password reference that can't be resolved
            out.login_error, out.login_error_kind = str(exc), "config"
            return out
        try:
            if not isinstance(session, ImapTarget):
                raise MigrationError(f"the target session is {type(session).__name__}, not IMAP")
            if folders is None:
                out.folders_unknown = unknown or "the source's folders are unknown"
            else:
                out.folders, out.left_behind = _probe_folders(ctx, session, folders)
            try:
                out.permanent = _probe_flags(session)
            except CommandError as exc:
                out.flags_error = str(exc)
            if canary:
                out.append = _probe_append(session)
        except ProtocolError as exc:
            out.broken = str(exc)
        finally:
            session.close()
    return out


def _probe_flags(session: ImapTarget) -> PermanentFlags:
    """SELECT INBOX and read its PERMANENTFLAGS: the flags a copy appended there keeps. A server
    drops the others without a word (Dovecot for an account without the ACL right "w")."""
    conn = session.conn
    reply = conn.check(b"SELECT " + conn.astring(APPEND_FOLDER), f"SELECT {APPEND_FOLDER}")
    for parts in reply.untagged:
        line = parts[0].decode("utf-8", "replace").strip()
        match = _PERMANENTFLAGS.search(line)
        if match is not None:
            return PermanentFlags(True, tuple(match.group(1).split()), line)
    return PermanentFlags(False, (), "")


def _probe_folders(
    ctx: CheckContext, session: ImapTarget, folders: list[FolderInfo]
) -> tuple[list[FolderProbe], list[str]]:
    before = {wire for wire, _, _ in list_folders(session.conn)}
    probes: dict[str, FolderProbe] = {}
    for mapping in plan_folders(folders, ctx.plan.folders, session.layout()):
        if mapping.excluded or mapping.target_wire in probes:
            continue
        probe = probes[mapping.target_wire] = FolderProbe(mapping.target_wire, mapping.source.display)
        if mapping.target_wire in before or mapping.target_wire.upper() == "INBOX":
            probe.existed = True
            continue
        try:
            session.create_folder(mapping.target_wire)
        except CommandError as exc:
            probe.refused = str(exc)
    created = [wire for wire, _, _ in list_folders(session.conn) if wire not in before]
    return list(probes.values()), _remove_folders(session, created)


def _remove_folders(session: ImapTarget, created: list[str]) -> list[str]:
    """Delete what the probe created, innermost first, if still empty; say why for the rest."""
    if not created:
        return []
    separator = session.separator or "/"
    left: list[str] = []
    counts = session.message_counts(created)
    for wire in sorted(created, key=lambda w: (-w.count(separator), w)):
        count = counts.get(wire)
        if count != 0:
            why = f"it holds {count} message(s) now" if isinstance(count, int) else f"STATUS failed: {count}"
            left.append(f"{wire}: not deleted, {why}")
            continue
        name = session.conn.astring(wire)
        reply = session.conn.command(b"DELETE " + name, f"DELETE {wire}")
        if reply.status != "OK":
            left.append(f"{wire}: DELETE answered {reply.status} {reply.text}")
            continue
        session.conn.command(b"UNSUBSCRIBE " + name, f"UNSUBSCRIBE {wire}")
    return left


def probe_message(token: str) -> bytes:
    """A small, plainly labelled message; its Message-ID finds it again without APPENDUID."""
    return (
        "From: cutover readiness <cutover-readiness@invalid>\r\n"
        f"Date: {formatdate(time.time(), usegmt=True)}\r\n"
        f"Message-ID: <{token}@cutover-readiness.invalid>\r\n"
        "Subject: cutover readiness probe (removed again at once)\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "The migration's readiness check appended this message to test the mailbox and removes it.\r\n"
    ).encode("ascii")


def _probe_append(session: ImapTarget) -> AppendProbe:
    out = AppendProbe()
    token = secrets.token_hex(12)
    floor = session.uidnext(APPEND_FOLDER)  # the probe's UID is at least this (RFC 3501 2.3.1.1)
    (outcome,) = session.append(APPEND_FOLDER, [AppendItem(probe_message(token), ("\\Seen",), None)])
    if outcome.error is not None:
        out.refused, out.code = outcome.error, outcome.code
        out.transcript.append(f"APPEND {APPEND_FOLDER}: {outcome.error}")
        return out
    out.uid = outcome.item_id
    out.transcript.append(
        f"APPEND {APPEND_FOLDER}: OK" + (f" (APPENDUID: UID {out.uid})" if out.uid else " (no APPENDUID)")
    )
    conn = session.conn
    conn.check(b"SELECT " + conn.astring(APPEND_FOLDER), f"SELECT {APPEND_FOLDER}")
    if out.uid is None:
        out.uid = _find_probe(session, token, floor, out.transcript)
        if out.uid is None:
            out.left = "the probe message could not be found again (no APPENDUID, not among the new UIDs)"
            return out
    uid = out.uid.encode("ascii")
    stored = conn.command(b"UID STORE " + uid + b" +FLAGS.SILENT (\\Deleted)", "UID STORE \\Deleted")
    out.transcript.append(f"UID STORE {out.uid} +FLAGS.SILENT (\\Deleted): {stored.status} {stored.text}")
    if stored.status != "OK":
        out.left = f"UID {out.uid} could not be flagged \\Deleted: {stored.status} {stored.text}"
        return out
    if conn.has("UIDPLUS"):
        expunge, what = b"UID EXPUNGE " + uid, f"UID EXPUNGE {out.uid}"
    else:
        # A plain EXPUNGE removes every message flagged \Deleted: only when ours is the only one.
        others = [u for u in _deleted_uids(session, out.transcript) if u != out.uid]
        if others:
            out.left = (
                f"UID {out.uid} is flagged \\Deleted but not expunged: the server lacks UIDPLUS and "
                f"{len(others)} other message(s) of the user are flagged \\Deleted too"
            )
            return out
        expunge, what = b"EXPUNGE", "EXPUNGE"
    expunged = conn.command(expunge, what)
    out.transcript.append(f"{what}: {expunged.status} {expunged.text}")
    if expunged.status != "OK":
        out.left = f"UID {out.uid} could not be expunged: {expunged.status} {expunged.text}"
    return out


def _find_probe(session: ImapTarget, token: str, floor: int, transcript: list[str]) -> str | None:
    """The probe's UID among the messages from ``floor`` on, by its Message-ID."""
    reply = session.conn.command(
        b"UID FETCH %d:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])" % max(floor, 1), "UID FETCH Message-ID"
    )
    transcript.append(f"UID FETCH {floor}:* Message-ID: {reply.status} {reply.text}")
    for parts in reply.untagged:
        if b" FETCH " in parts[0] and any(token.encode("ascii") in p for p in parts[1::2]):
            uid = fetch_meta(b"".join(parts[::2]))[0]
            if uid is not None and uid >= floor:
                return str(uid)
    return None


def _deleted_uids(session: ImapTarget, transcript: list[str]) -> list[str]:
    reply = session.conn.command(b"UID SEARCH DELETED", "UID SEARCH DELETED")
    transcript.append(f"UID SEARCH DELETED: {reply.status} {reply.text}")
    found: list[str] = []
    for parts in reply.untagged:
        words = parts[0].split()
        if len(words) > 1 and words[1].upper() == b"SEARCH":
            found += [w.decode("ascii") for w in words[2:]]
    return found

"""Mail flows: a uniquely marked probe sent through the new MX arrives in the wave's canary mailbox.

``probe_mail_flow`` speaks SMTP to the MX the switch pointed the wave's domain at, keeping every
reply as the transcript; the MX refusing the canary's domain (or anything else) ends it as a finding
in the server's words. Once the MX took the message, it watches the canary's INBOX on the target
over IMAP (a master or the user's login, as the plan says) for the probe's header among the UIDs
the folder assigns from then on, until the deadline, and then removes it again (UID STORE \\Deleted,
UID EXPUNGE: only its own UID). The delay is measured from the MX's acceptance of DATA to the first
look that saw the probe, so its resolution is ``poll_seconds``.
"""

from __future__ import annotations

import secrets
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

from runners.connectors.credentials import user_password
from runners.connectors.imap_common import parse_status
from runners.connectors.imap_login import open_imap
from runners.errors import MigrationError
from runners.imap.wire import ImapConnection
from runners.plan.model import MailboxEntry, Plan
from runners.safe_text import file_name_part, safe

#: The header that marks a probe; its value is the probe's token.
PROBE_HEADER = "X-Cutover-Probe"


@dataclass(slots=True)
class ProbeResult:
    """What the probe found. ``outcome``: "arrived", "not arrived" (by the deadline), "refused" (the MX
    said no: ``refusal`` holds its words), "unreachable" (no SMTP dialogue), "stopped"."""

    outcome: str
    token: str
    canary: str
    mx: str
    #: Seconds from the MX's 250 to DATA until the probe was seen in INBOX (arrived only).
    delay: float | None = None
    refusal: str | None = None
    #: Every SMTP command and reply, in order ("S: 220 ...", "C: MAIL FROM:<...>").
    smtp: list[str] = field(default_factory=list)
    #: What the last look at the canary's INBOX saw.
    seen: str = ""
    #: Whether the probe was removed from the canary again, and if not, why.
    removed: bool = False
    left: str | None = None


def wave_canary(plan: Plan, wave: str) -> MailboxEntry:
    """The wave's canary: the plan's ``[checks] canary`` when it is in this wave, else its first mailbox."""
    entries = plan.wave(wave)
    if not entries:
        raise MigrationError(f"wave {wave!r} has no mailboxes: there is no canary to probe")
    wanted = (plan.readiness.canary or "").casefold()
    for entry in entries:
        if wanted and wanted in (entry.source.casefold(), entry.target.casefold()):
            return entry
    return entries[0]


def canary_address(entry: MailboxEntry) -> str:
    for candidate in (entry.target, entry.address or ""):
        if "@" in candidate:
            return candidate
    raise MigrationError(f"the canary {entry.target!r} has no mail address to send the probe to")


def probe_mail_flow(
    plan: Plan,
    wave: str,
    *,
    mx_host: str,
    mx_port: int = 25,
    sender: str | None = None,
    deadline_seconds: float = 120.0,
    poll_seconds: float = 1.0,
    smtp_timeout: float = 30.0,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    """Send a probe through ``mx_host:mx_port`` to the wave's canary and wait for it in INBOX.

    Never raises for what the servers say: a refusal, a lost connection or a probe that doesn't come
    is the result. Raises ``MigrationError`` when the wave has no canary address, and the connection's
    error when the canary's INBOX can't be opened at all (before anything is sent).
    """
    entry = wave_canary(plan, wave)
    recipient = canary_address(entry)
    token = f"{file_name_part(wave)}-{secrets.token_hex(8)}"
    result = ProbeResult("unreachable", token, recipient, f"{mx_host}:{mx_port}")
    sender = sender or f"cutover-probe@{recipient.rpartition('@')[2]}"
    conn = open_imap(
        plan.target, entry.target, user_password(plan.target, entry.target, entry.target_password)
    )
    try:
        floor = _inbox_uidnext(conn)
        accepted = _send(
            result,
            mx_host,
            mx_port,
            sender,
            recipient,
            _message(token, wave, sender, recipient),
            smtp_timeout,
        )
        if accepted is None:
            return result
        _watch(
            conn, result, floor, accepted, deadline_seconds, poll_seconds, stop or threading.Event(), clock
        )
        if result.outcome == "arrived":
            _remove(conn, result)
        return result
    finally:
        conn.close()


def _message(token: str, wave: str, sender: str, recipient: str) -> bytes:
    lines = [
        f"From: Cutover probe <{sender}>",
        f"To: <{recipient}>",
        f"Subject: Cutover probe for wave {file_name_part(wave)} ({token})",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: <{token}@cutover.invalid>",
        f"{PROBE_HEADER}: {token}",
        "",
        "This message proves that mail for this mailbox flows through its new MX. It is removed automatically.",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def _send(
    result: ProbeResult, host: str, port: int, sender: str, recipient: str, body: bytes, timeout: float
) -> float | None:
    """One SMTP dialogue; the clock reading when DATA was accepted, or None (``result`` says why)."""
    smtp = smtplib.SMTP(timeout=timeout)
    transcript = result.smtp

    def step(command: str | None, reply: tuple[int, bytes]) -> bool:
        if command:
            transcript.append(f"C: {command}")
        words = safe(reply[1].decode("utf-8", "replace"))
        transcript.append(f"S: {reply[0]} {words}")
        if reply[0] >= 400:
            result.outcome, result.refusal = "refused", f"{reply[0]} {words}"
            return False
        return True

    try:
        if not step(None, smtp.connect(host, port)):
            return None
        if not step(f"EHLO {socket.getfqdn()}", smtp.ehlo()):
            return None
        if not step(f"MAIL FROM:<{sender}>", smtp.mail(sender)):
            return None
        if not step(f"RCPT TO:<{recipient}>", smtp.rcpt(recipient)):
            return None
        if not step("DATA", smtp.data(body)):
            return None
        accepted = time.monotonic()
        step("QUIT", smtp.quit())
        return accepted
    except (OSError, smtplib.SMTPException) as exc:  # no complete dialogue: the outcome stays "unreachable"
        transcript.append(f"!: {safe(exc)}")
        result.refusal = safe(exc)
        return None
    finally:
        smtp.close()


def _inbox_uidnext(conn: ImapConnection) -> int:
    return parse_status(conn.check(b"STATUS INBOX (UIDNEXT UIDVALIDITY MESSAGES)", "STATUS INBOX")).uidnext


def _watch(
    conn: ImapConnection,
    result: ProbeResult,
    floor: int,
    accepted: float,
    deadline_seconds: float,
    poll_seconds: float,
    stop: threading.Event,
    clock: Callable[[], float],
) -> None:
    result.outcome = "not arrived"
    deadline = clock() + deadline_seconds
    conn.check(b"SELECT INBOX", "SELECT INBOX")
    while True:
        uids = _search(conn, floor, result.token)
        if uids:
            result.outcome, result.delay = "arrived", round(time.monotonic() - accepted, 3)
            result.seen = f"INBOX: the probe as UID {uids[0]}"
            return
        state = parse_status(conn.check(b"STATUS INBOX (UIDNEXT MESSAGES)", "STATUS INBOX"))
        result.seen = (
            f"INBOX: {state.messages} messages; UIDNEXT {floor} before the probe, {state.uidnext} now; "
            f"none of UID {floor}:* carries {PROBE_HEADER}: {result.token}"
        )
        if clock() >= deadline:
            return
        if stop.wait(poll_seconds):
            result.outcome = "stopped"
            return


def _search(conn: ImapConnection, floor: int, token: str) -> list[int]:
    conn.check(b"NOOP", "NOOP")  # lets the server report what arrived since the last look
    reply = conn.check(
        b"UID SEARCH UID %d:* HEADER %s %s" % (max(floor, 1), PROBE_HEADER.encode(), token.encode("ascii")),
        "UID SEARCH probe",
    )
    found: list[int] = []
    for parts in reply.untagged:
        words = parts[0].split()
        if len(words) > 1 and words[1].upper() == b"SEARCH":
            found += [int(w) for w in words[2:] if w.isdigit() and int(w) >= floor]
    return found


def _remove(conn: ImapConnection, result: ProbeResult) -> None:
    uid = _search(conn, 1, result.token)
    if not uid:
        result.left = "the probe could not be found again to remove it"
        return
    uids = b",".join(b"%d" % u for u in uid)
    stored = conn.command(b"UID STORE " + uids + b" +FLAGS.SILENT (\\Deleted)", "UID STORE \\Deleted")
    if stored.status != "OK":
        result.left = f"UID {uid[0]} could not be flagged \\Deleted: {stored.status} {safe(stored.text)}"
        return
    if not conn.has("UIDPLUS"):
        # A plain EXPUNGE would remove every message the user flagged \Deleted, not only ours.
        result.left = f"UID {uid[0]} is flagged \\Deleted but not expunged: the server lacks UIDPLUS"
        return
    expunged = conn.command(b"UID EXPUNGE " + uids, "UID EXPUNGE")
    if expunged.status != "OK":
        result.left = f"UID {uid[0]} could not be expunged: {expunged.status} {safe(expunged.text)}"
        return
    result.removed = True

"""Read one message's display headers from the source, now, without changing anything there.

For the failure drill-down: the ledger keeps no headers (storing them for every copied message would
cost, and failures are few), so they are read live when someone looks at a failure. The source is
opened the way the engine opens it (``open_source``: same login, TLS, master user), read-only:

* IMAP: ``EXAMINE`` and ``UID FETCH <uid> BODY.PEEK[HEADER.FIELDS (...)]`` (never sets \\Seen);
  a folder whose UIDVALIDITY changed since the ledger row was written is reported, not guessed at.
* POP3: ``UIDL`` finds the message number of the ledger's UIDL now, ``TOP <n> 0`` reads its header
  (RETR would download the whole message: failures are often the largest ones). The session ends
  with RSET, so the server commits nothing.
* Maildir: the file whose base name is the ledger's key, read up to the end of its header.

Anything that goes wrong comes back as text (the server's words when it said something), never as
an exception; secrets of the plan are scrubbed from that text, and nothing is logged.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from runners.connectors.base import SourceSession
from runners.connectors.imap_common import select_state
from runners.connectors.imap_source import ImapSource
from runners.connectors.maildir_source import MaildirSource
from runners.connectors.pop3_source import Pop3Source
from runners.engine.sessions import open_source, user_password
from runners.errors import MigrationError
from runners.imap.parse import fetch_uid
from runners.plan.model import MailboxEntry, Plan
from runners.report.headers import FIELDS, MessageHeaders, parse_headers

#: Seconds for connecting and for each reply: the operator is waiting for it.
DEFAULT_TIMEOUT = 15.0
#: Bytes of a Maildir file read at most looking for the end of its header.
MAX_HEADER_BYTES = 256 * 1024
_SHORTEST_SCRUBBED = 4  # shorter "secrets" would blank out ordinary words of the server's text


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A message as the ledger knows it (``messages`` and ``folders`` rows)."""

    #: The folder's name on the source: IMAP wire name, Maildir directory (``.Sent``), or INBOX.
    folder: str
    uid: int
    #: The ledger's key: the UID (IMAP), the UIDL (POP3), the file's base name (Maildir).
    key: str
    #: IMAP: the folder's UIDVALIDITY when the row was written (0: don't check).
    uidvalidity: int = 0


def message_headers(
    plan: Plan, source_mailbox: str, ref: MessageRef, *, timeout: float = DEFAULT_TIMEOUT
) -> MessageHeaders | str:
    """Subject, From, Date and Message-ID of one source message, or why they could not be read."""
    entry = next((m for m in plan.mailboxes if m.source == source_mailbox), None)
    if entry is None:
        return f"{source_mailbox} is not a mailbox of the plan"
    endpoint = dataclasses.replace(plan.source, timeout=timeout)
    secrets = _secrets(plan, entry)
    try:
        session = open_source(endpoint, entry)
        try:
            return _read(session, ref)
        finally:
            session.close()
    except (MigrationError, OSError) as exc:
        return _scrub(str(exc), secrets)
    except Exception as exc:  # a reply we could not make sense of: still only something to show
        return _scrub(f"unexpected {type(exc).__name__}: {exc}", secrets)


def _read(session: SourceSession, ref: MessageRef) -> MessageHeaders | str:
    if isinstance(session, ImapSource):
        return _imap(session, ref)
    if isinstance(session, Pop3Source):
        return _pop3(session, ref)
    if isinstance(session, MaildirSource):
        return _maildir(session, ref)
    return f"reading headers from {session.server} is not supported"


def _imap(source: ImapSource, ref: MessageRef) -> MessageHeaders | str:
    conn = source.conn
    state = select_state(conn.check(b"EXAMINE " + conn.astring(ref.folder), f"EXAMINE {ref.folder}"))
    if ref.uidvalidity and state.uidvalidity and state.uidvalidity != ref.uidvalidity:
        return (
            f"{ref.folder} has UIDVALIDITY {state.uidvalidity} on the source now, {ref.uidvalidity} when "
            f"this was recorded: UID {ref.uid} no longer names the same message"
        )
    items = b"BODY.PEEK[HEADER.FIELDS (" + " ".join(FIELDS).upper().encode("ascii") + b")]"
    operation = f"UID FETCH {ref.folder} {ref.uid} headers"
    reply = conn.command(b"UID FETCH %d (UID " % ref.uid + items + b")", operation)
    for parts in reply.untagged:
        if b" FETCH " not in parts[0]:
            continue
        uid = fetch_uid(parts)
        if uid not in (None, ref.uid):
            continue  # an unsolicited update about another message
        if len(parts) >= 2:
            return parse_headers(parts[1])
        if b'] ""' in parts[0] or b"] NIL" in parts[0]:
            return parse_headers(b"")  # none of the fields: the server sends an empty string
    if reply.status != "OK":
        return f"{conn.server} {operation}: {reply.status} {reply.text}"
    return f"UID {ref.uid} is no longer in {ref.folder} on the source (expunged since the run?)"


def _pop3(source: Pop3Source, ref: MessageRef) -> MessageHeaders | str:
    block = source.headers(ref.key)
    if block is None:
        return f"UIDL {ref.key} is no longer on the source (deleted since the run?)"
    return parse_headers(block)


def _maildir(source: MaildirSource, ref: MessageRef) -> MessageHeaders | str:
    if ref.folder == "INBOX":
        folder = source.root
    elif ref.folder.startswith(".") and ref.folder != ".." and os.sep not in ref.folder:
        folder = os.path.join(source.root, ref.folder)  # Maildir++: ".Sent", ".Archive.2023"
    else:
        return f"{ref.folder!r} is not a Maildir++ folder name"
    for sub in ("cur", "new"):
        directory = os.path.join(folder, sub)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            if name.partition(":")[0] == ref.key:
                return parse_headers(_head_of(os.path.join(directory, name)))
    return f"{ref.key} is no longer in {folder} (expunged or moved since the run?)"


def _head_of(path: str) -> bytes:
    """The file's beginning, up to its first blank line (or MAX_HEADER_BYTES)."""
    with open(path, "rb") as fh:
        data = b""
        while len(data) < MAX_HEADER_BYTES:
            chunk = fh.read(16 * 1024)
            if not chunk:
                break
            data += chunk
            if b"\n\n" in data or b"\n\r\n" in data:
                break
    return data


def _secrets(plan: Plan, entry: MailboxEntry) -> list[str]:
    """The passwords this login may send, to keep them out of any text we return."""
    source = plan.source
    values: list[str | None] = []
    try:
        values.append(source.master_password.reveal() if source.master_password else None)
    except MigrationError:
        pass  # unreadable: then it was never sent either
    try:
        values.append(user_password(source, entry.source, entry.source_password))
    except MigrationError:
        pass
    return [v for v in values if v and len(v) >= _SHORTEST_SCRUBBED]


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "********")
    return text

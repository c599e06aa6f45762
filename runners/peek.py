"""Read one message's display headers from the source, now, without changing anything there.

For the failure drill-down: the ledger keeps no headers (storing them for every copied message would
cost, and failures are few), so they are read live when someone looks at a failure. The source is
opened the way the engine opens it (``open_source``: same login, TLS, master user), and each source
connector reads the header its own way, read-only (``SourceSession.header_block``):

* IMAP: ``EXAMINE`` and ``UID FETCH <uid> BODY.PEEK[HEADER.FIELDS (...)]`` (never sets \\Seen);
  a folder whose UIDVALIDITY changed since the ledger row was written is reported, not guessed at.
* POP3: ``UIDL`` finds the message number of the ledger's UIDL now, ``TOP <n> 0`` reads its header
  (RETR would download the whole message: failures are often the largest ones). The session ends
  with RSET, so the server commits nothing.
* Maildir: the file whose base name is the ledger's key, read up to the end of its header.

Anything that goes wrong comes back as text (the server's words when it said something), never as
an exception; that text passes ``runners.safe_text.safe`` (no secret, no control), and nothing is logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

from runners.connectors.base import SourceSession
from runners.connectors.credentials import user_password
from runners.engine.sessions import open_source
from runners.errors import MigrationError
from runners.headers import FIELDS, MessageHeaders, parse_headers
from runners.plan.model import MailboxEntry, Plan
from runners.safe_text import safe

#: Seconds for connecting and for each reply: the operator is waiting for it.
DEFAULT_TIMEOUT = 15.0


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
    _reveal_secrets(plan, entry)
    try:
        session = open_source(endpoint, entry)
        try:
            return _read(session, ref)
        finally:
            session.close()
    except (MigrationError, OSError) as exc:
        return safe(exc)
    except Exception as exc:  # a reply we could not make sense of: still only something to show
        return safe(f"unexpected {type(exc).__name__}: {exc}")


def _read(session: SourceSession, ref: MessageRef) -> MessageHeaders | str:
    block = session.header_block(
        folder=ref.folder, uid=ref.uid, key=ref.key, uidvalidity=ref.uidvalidity, fields=FIELDS
    )
    return block if isinstance(block, str) else parse_headers(block)


def _reveal_secrets(plan: Plan, entry: MailboxEntry) -> None:
    """Reveal the passwords this login may send first: revealing registers them with the scrubber."""
    source = plan.source
    with contextlib.suppress(MigrationError):  # unreadable: then it was never sent either
        if source.master_password:
            source.master_password.reveal()
    with contextlib.suppress(MigrationError):
        user_password(source, entry.source, entry.source_password)

"""POP3 source over stdlib ``poplib``: one folder, INBOX, read without ever changing it.

``poplib`` sets up the connection (POP3, POP3S, STLS) and reads the greeting; commands are then
sent and read here because poplib's long-response reader strips line endings and refuses lines
over 2048 bytes, while a migration needs every message byte for byte, whatever its line lengths.

What POP3 can and can't say:

* ``MessageMeta.key`` is the UIDL (reruns are idempotent by UIDL), ``uid`` the message number of
  this session, ``size`` the LIST size, ``flags`` empty. INTERNALDATE is unknown until the body is
  there: ``fetch`` yields a meta whose ``internaldate`` comes from the top ``Received:`` header's
  date (the final delivery), else ``Date:``, else None.
* There is no UIDVALIDITY and no cheap change detection: ``folder_states`` returns
  ``FolderState(uidvalidity=0, uidnext=0, messages=<STAT count>)``, so the engine always lists
  UIDLs for POP3 (UIDL + LIST are one line per message: cheap).
* A session sees the maildrop as it was at login; a new pass needs a new session.
* Bodies are what the server stores, with CRLF line endings: POP3 has no other framing, so a
  message stored with bare LF comes back with CRLF (Dovecot's LIST size already counts CRLF),
  and one without a final line break comes back without it (the CRLF the server must add before
  the terminating dot is dropped when the LIST size says it isn't part of the message).
  Each body is checked against its LIST size; a mismatch is a FetchFailure naming both numbers.
* Nothing is ever deleted or marked: no DELE, and RSET after every ``fetch`` call and before
  QUIT, so the server commits nothing for this session. Dovecot otherwise sets \\Seen on every
  retrieved message, at QUIT and also when the connection just drops.

Master login: POP3's USER/PASS has no authorization identity, so ``endpoint.login_template``
(``"{user}*{master}"``, Dovecot's separator login, when unset) is sent with the master password.
With no template configured and a server announcing ``SASL PLAIN`` in CAPA, AUTH PLAIN with
authzid = user is used instead, as ``Endpoint.login_template`` documents.
"""

from __future__ import annotations

import base64
import email.utils
import io
import poplib
import re
import ssl
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import NoReturn, cast

from runners.connectors.base import SourceSession
from runners.connectors.credentials import user_password
from runners.connectors.imap_source import MAX_BODY_BYTES
from runners.connectors.tls import tls_context
from runners.errors import (
    AuthError,
    CommandError,
    ConnectError,
    ConnectionLost,
    FetchConnectionLost,
    LimitExceeded,
    RunInterrupted,
    TlsError,
)
from runners.imap import watchdog
from runners.imap.dates import format_date_time
from runners.imap.wire import MAX_COMMAND_SECONDS
from runners.model import FetchedMessage, FetchFailure, FolderInfo, FolderState, MessageMeta
from runners.plan.model import Endpoint, MailboxEntry

INBOX = "INBOX"
INBOX_FOLDER = FolderInfo(raw_name=INBOX, path=(INBOX,), separator=None)
DEFAULT_LOGIN_TEMPLATE = "{user}*{master}"

_STATUS_LIMIT = 8192  # longest status line we accept (RFC 2449 allows 512)
_READ_CHUNK = 256 * 1024
_TERMINATOR = b"\r\n.\r\n"
#: A multi-line reply that isn't a message (LIST, UIDL, CAPA, TOP): a million messages list in ~30 MB.
MAX_LISTING_BYTES = 64 * 1024 * 1024
# RFC 2449/3206 response codes -> the codes CommandError treats as "retry later".
_RETRY_CODES = {"IN-USE": "INUSE", "SYS/TEMP": "UNAVAILABLE", "LOGIN-DELAY": "UNAVAILABLE"}
_RESP_CODE = re.compile(rb"^-ERR \[([^\]]+)\]")
_RECEIVED = re.compile(rb"^received:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE)
_DATE = re.compile(rb"^date:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE)


def open_session(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    """The source session for one mailbox of a plan (``runners.adapters`` names this opener)."""
    user = entry.source
    master = None
    if endpoint.auth == "master":
        assert endpoint.master_user is not None and endpoint.master_password is not None
        master = (endpoint.master_user, endpoint.master_password.reveal())
    return open_pop3_source(endpoint, user, user_password(endpoint, user, entry.source_password), master)


def open_pop3_source(
    endpoint: Endpoint, user: str, password: str | None, master: tuple[str, str] | None
) -> Pop3Source:
    """Connect and log in as ``user`` (own ``password``, or ``master`` = (master user, password))."""
    if not endpoint.host:
        raise ConnectError("pop3://?", "connect", "no host configured")
    port = endpoint.port or (poplib.POP3_SSL_PORT if endpoint.security == "tls" else poplib.POP3_PORT)
    server = f"pop3://{endpoint.host}:{port}"
    source = Pop3Source(_connect(endpoint, endpoint.host, port, server), server)
    try:
        source._login(endpoint, user, password, master)
    except BaseException:
        source._drop()
        raise
    return source


def _connect(endpoint: Endpoint, host: str, port: int, server: str) -> poplib.POP3:
    try:
        context = tls_context(endpoint) if endpoint.security != "plain" else None
        if endpoint.security == "tls":
            return poplib.POP3_SSL(host, port, timeout=endpoint.timeout, context=context)
        conn = poplib.POP3(host, port, timeout=endpoint.timeout)
    except poplib.error_proto as exc:  # the greeting was -ERR
        raise ConnectError(server, "connect", _error_text(exc)) from None
    except ssl.SSLError as exc:  # handshake or certificate: retrying won't help
        raise TlsError(server, "TLS handshake", str(exc)) from None
    except OSError as exc:  # refused, unreachable, timeout
        raise ConnectError(server, "connect", str(exc)) from None
    if endpoint.security == "starttls":
        try:
            conn.stls(context)
        except poplib.error_proto as exc:
            _close_quietly(conn)  # the server refuses STLS (or lacks it): final, as a certificate refusal is
            raise ConnectError(server, "STLS", _error_text(exc), retryable=False) from None
        except ssl.SSLError as exc:
            _close_quietly(conn)
            raise TlsError(server, "STLS", str(exc)) from None
        except OSError as exc:
            _close_quietly(conn)
            raise ConnectError(server, "STLS", str(exc)) from None
    return conn


def _close_quietly(conn: poplib.POP3) -> None:
    # After a failed TLS handshake the socket is already gone and poplib's close() raises EBADF.
    try:
        conn.close()
    except OSError:
        pass


class Pop3Source:
    """A :class:`runners.connectors.base.SourceSession` over one logged-in POP3 session."""

    def __init__(self, conn: poplib.POP3, server: str) -> None:
        self.server = server
        self._conn = conn
        self._closed = False
        # UIDL -> (message number, LIST size), from this session's last listing.
        self._numbers: dict[str, tuple[int, int]] | None = None
        self._guard = watchdog.guard(conn.sock)
        #: The most the next multi-line reply may hold, and the limit's name (RETR: its LIST size).
        self._next_limit: tuple[int, str] | None = None

    # -- SourceSession ---------------------------------------------------------------------

    def list_folders(self) -> list[FolderInfo]:
        return [INBOX_FOLDER]

    def folder_states(self, folders: Sequence[FolderInfo]) -> dict[str, FolderState | Exception]:
        states: dict[str, FolderState | Exception] = {}
        for folder in folders:
            try:
                self._check_inbox(folder, "STAT")
                count = int(self._command("STAT", "STAT").split()[1])
            except CommandError as exc:
                states[folder.raw_name] = exc
            except (IndexError, ValueError):
                states[folder.raw_name] = CommandError(
                    self.server, "STAT", "unparsable STAT reply", status="BAD"
                )
            else:
                states[folder.raw_name] = FolderState(uidvalidity=0, uidnext=0, messages=count)
        return states

    def list_messages(self, folder: FolderInfo) -> tuple[FolderState, list[MessageMeta]]:
        self._check_inbox(folder, "UIDL")
        sizes = dict(_pairs(self._long_command("LIST", "LIST")))
        metas: list[MessageMeta] = []
        numbers: dict[str, tuple[int, int]] = {}
        for number, uidl in _pairs(self._long_command("UIDL", "UIDL")):
            size = int(sizes.get(number, "0"))
            numbers[uidl] = (number, size)
            metas.append(MessageMeta(uidl, number, size))
        self._numbers = numbers
        return FolderState(uidvalidity=0, uidnext=0, messages=len(metas)), metas

    def fetch(
        self, folder: FolderInfo, metas: Sequence[MessageMeta]
    ) -> Iterator[FetchedMessage | FetchFailure]:
        self._check_inbox(folder, "RETR")
        if self._numbers is None:
            self.list_messages(folder)  # metas from another session: numbers must be this session's
        numbers = self._numbers or {}
        retrieved = False
        for meta in metas:
            found = numbers.get(meta.key)
            if found is None:
                yield FetchFailure(meta, f"UIDL {meta.key} is no longer on the server")
                continue
            number, listed = found
            command = f"RETR {number}"
            self._next_limit = retr_limit(listed)
            try:
                self._command(command, command)
            except CommandError as exc:
                yield FetchFailure(meta, exc.server_text)  # -ERR is one line: the session goes on
                continue
            retrieved = True
            try:
                body = self._read_multiline(command)
            except ConnectionLost as exc:
                raise FetchConnectionLost(exc, folder.raw_name, [meta.uid], single=True) from None
            if len(body) == listed + 2 and body.endswith(b"\r\n"):
                # No line break at the end: the server added one before the terminating dot.
                body = body[:-2]
            if len(body) != listed:
                yield FetchFailure(
                    meta, f"size mismatch: server listed {listed} bytes, delivered {len(body)}"
                )
                continue
            date = internaldate_from_headers(body) or meta.internaldate
            yield FetchedMessage(MessageMeta(meta.key, meta.uid, meta.size, meta.flags, date), body)
        # Dovecot sets \Seen on retrieved messages at QUIT, or when the connection just drops:
        # RSET after every batch keeps a session that dies later from marking anything.
        if retrieved:
            self._command("RSET", "RSET")

    def isolate(self, uids: Collection[int]) -> None:
        """RETR sends one message at a time already: a drop names its message (FetchConnectionLost)."""

    def headers(self, key: str) -> bytes | None:
        """The header block of the message with UIDL ``key`` (TOP n 0: nothing is marked read), or
        None when no message has that UIDL any more."""
        if self._numbers is None:
            self.list_messages(INBOX_FOLDER)
        found = (self._numbers or {}).get(key)
        if found is None:
            return None
        return self._long_command(f"TOP {found[0]} 0", "TOP")

    def close(self) -> None:
        """RSET (forget anything the server meant to commit), QUIT, close; never raises."""
        if self._closed:
            return
        try:
            self._command("RSET", "RSET")
            self._command("QUIT", "QUIT")
        except (CommandError, ConnectionLost):
            pass
        self._drop()

    # -- login -----------------------------------------------------------------------------

    def _login(
        self, endpoint: Endpoint, user: str, password: str | None, master: tuple[str, str] | None
    ) -> None:
        operation = f"login {user}" if master is None else f"login {user} as master {master[0]}"
        secrets = (user, password or "", *(master or ()))
        if any(c in s for s in secrets for c in "\r\n\0"):
            raise AuthError(self.server, operation, "user name or password contains a line break or NUL")
        try:
            if master is None:
                if password is None:
                    raise AuthError(self.server, operation, "no password given")
                self._command(f"USER {user}", operation)
                self._command(f"PASS {password}", operation)
                return
            master_user, master_password = master
            if endpoint.login_template is None and self._offers_sasl_plain():
                token = base64.b64encode(f"{user}\0{master_user}\0{master_password}".encode()).decode("ascii")
                self._command(f"AUTH PLAIN {token}", operation)
                return
            login = (endpoint.login_template or DEFAULT_LOGIN_TEMPLATE).format(user=user, master=master_user)
            self._command(f"USER {login}", operation)
            self._command(f"PASS {master_password}", operation)
        except CommandError as exc:
            if exc.retryable:  # IN-USE, SYS/TEMP, LOGIN-DELAY: the credentials may be fine
                raise
            raise AuthError(self.server, operation, exc.server_text, exc.code) from None

    def _offers_sasl_plain(self) -> bool:
        try:
            self._command("CAPA", "CAPA")
        except CommandError:
            return False  # no CAPA (RFC 1939 server): no SASL either
        for line in self._read_multiline("CAPA").split(b"\r\n"):
            words = line.upper().split()
            if words[:1] == [b"SASL"] and b"PLAIN" in words[1:]:
                return True
        return False

    # -- wire ------------------------------------------------------------------------------

    def _check_inbox(self, folder: FolderInfo, operation: str) -> None:
        if folder.raw_name != INBOX:
            raise CommandError(self.server, f"{operation} {folder.raw_name}", "POP3 has only INBOX")

    def _command(self, line: str, operation: str) -> bytes:
        """Send one command and return its +OK line; -ERR raises CommandError with its words."""
        if self._closed:
            raise ConnectionLost(self.server, operation, "connection already closed")
        try:
            with self._time_limit():
                self._conn.sock.sendall(line.encode("utf-8") + b"\r\n")
                reply = self._conn.file.readline(_STATUS_LIMIT)
        except OSError as exc:
            self._lost(operation, str(exc))
        if not reply.endswith(b"\n"):
            self._lost(operation, "connection closed by the server" if not reply else "status line too long")
        if reply.startswith(b"+OK"):
            return reply
        text = reply.rstrip(b"\r\n").decode("utf-8", "replace")
        code = _RESP_CODE.match(reply)
        code_text = code.group(1).decode("ascii", "replace").upper() if code else None
        status = "-ERR" if reply.startswith(b"-ERR") else "BAD"
        retry_as = _RETRY_CODES.get(code_text or "")
        raise CommandError(
            self.server, operation, text, retry_as or code_text, status, retryable=retry_as is not None
        )

    def _long_command(self, line: str, operation: str) -> bytes:
        self._command(line, operation)
        return self._read_multiline(operation)

    def _read_multiline(self, operation: str) -> bytes:
        """The data of a multi-line reply, dot-unstuffed, with its line endings as sent."""
        reader = cast(io.BufferedReader, self._conn.file)  # socket.makefile("rb")
        limit, why = self._next_limit or (MAX_LISTING_BYTES, "the limit for a listing")
        self._next_limit = None
        data = bytearray(b"\r\n")  # the status line's CRLF: lets an empty reply match too
        start = 0
        try:
            with self._time_limit():
                while (end := data.find(_TERMINATOR, start)) < 0:
                    if len(data) > limit:
                        self._drop()
                        raise LimitExceeded(
                            self.server,
                            operation,
                            f"the server sent more than {why} ({limit} bytes); connection dropped",
                        )
                    start = max(0, len(data) - len(_TERMINATOR) + 1)
                    chunk = reader.read1(_READ_CHUNK)
                    if not chunk:
                        self._lost(operation, "connection closed by the server")
                    data += chunk
        except OSError as exc:
            self._lost(operation, str(exc))
        content = data[: end + 2]
        if b"\r\n.." in content:
            content = content.replace(b"\r\n..", b"\r\n.")
        return bytes(content[2:])

    @contextmanager
    def _time_limit(self) -> Iterator[None]:
        """Hold one command to ``MAX_COMMAND_SECONDS``: the watchdog shuts the socket when it overruns
        (``_lost`` then tells that from the server's own hang-up)."""
        self._guard.arm(MAX_COMMAND_SECONDS)
        try:
            yield
        finally:
            self._guard.disarm()

    def _lost(self, operation: str, text: str) -> NoReturn:
        self._drop()
        if watchdog.aborted():
            raise RunInterrupted("the run was stopped at once: connections closed")
        if self._guard.fired:
            raise LimitExceeded(
                self.server,
                operation,
                f"the server did not complete {operation} within {MAX_COMMAND_SECONDS:g} s "
                "(the limit for one command); connection dropped",
            )
        raise ConnectionLost(self.server, operation, text)

    def _drop(self) -> None:
        self._closed = True
        self._guard.release()
        _close_quietly(self._conn)

    def header_block(
        self, *, folder: str, uid: int, key: str, uidvalidity: int, fields: Sequence[str]
    ) -> bytes | str:
        """``UIDL`` finds the message number of the ledger's UIDL now, ``TOP <n> 0`` reads its header
        (RETR would download the whole message: failures are often the largest ones)."""
        block = self.headers(key)
        if block is None:
            return f"UIDL {key} is no longer on the source (deleted since the run?)"
        return block


def retr_limit(listed: int) -> tuple[int, str]:
    """The most a RETR of a message listed at ``listed`` bytes may send: dot-stuffing adds a byte to
    a line that starts with a dot (half of it at worst, for lines of one dot), plus slack for the CRLF
    the server adds before the terminating dot; never more than ``MAX_BODY_BYTES``."""
    if listed > MAX_BODY_BYTES:
        return MAX_BODY_BYTES, "the limit for any message body"
    return listed + listed // 2 + 64 * 1024, f"the LIST size of {listed} bytes plus slack"


def _pairs(data: bytes) -> Iterator[tuple[int, str]]:
    """``<number> <word>`` lines of LIST/UIDL (latin-1 keeps any byte of a UIDL distinct)."""
    for line in data.split(b"\r\n"):
        number, _, rest = line.partition(b" ")
        if number.isdigit():
            yield int(number), rest.split(b" ", 1)[0].decode("latin-1")


def internaldate_from_headers(message: bytes) -> str | None:
    """IMAP date-time of the top ``Received:`` header's date, else ``Date:``, else None."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = len(message)
    received = _RECEIVED.search(message, 0, end)
    if received is not None:
        date = imap_date(received.group(1).rpartition(b";")[2])
        if date is not None:
            return date
    header = _DATE.search(message, 0, end)
    return imap_date(header.group(1)) if header is not None else None


def imap_date(rfc822_date: bytes) -> str | None:
    """``Tue, 14 Nov 2023 22:13:20 +0100`` -> ``14-Nov-2023 22:13:20 +0100``; None if unparsable."""
    parsed = email.utils.parsedate_tz(" ".join(rfc822_date.decode("ascii", "replace").split()))
    if parsed is None or not 1000 <= parsed[0] <= 9999:
        return None
    try:  # a zone of a day or more is no zone: timezone() refuses it
        zone = timezone(timedelta(seconds=parsed[9] or 0))
        return format_date_time(datetime(*parsed[:6], tzinfo=zone))
    except ValueError:
        return None


def _error_text(exc: poplib.error_proto) -> str:
    """poplib puts the server's reply line (bytes) or its own message (str) in args[0]."""
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)

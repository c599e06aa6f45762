"""What an EWS answer means for the migration, in the terms the engine reads.

Per message (``AppendOutcome``), as the IMAP target does with its response codes:

* ErrorMessageSizeExceeded, HTTP 413: that message is refused (the server's words kept), the rest go on;
* ErrorItemCorrupt, ErrorMimeContentConversionFailed, ErrorCorruptData: that message failed;
* ErrorQuotaExceeded: the mailbox is full, nothing more goes in (``fatal_for_mailbox``).

Per mailbox (raised): ErrorImpersonateUserDenied and ErrorNonExistentMailbox fail that mailbox
(``MailboxFatal``), the wave goes on; 401 is final (``AuthError`` naming the service account, never
its password); a dropped connection, a timeout or a 503 is ``ConnectionLost`` (the engine looks the
batch up by key, then retries). A request that keeps failing (not ErrorServerBusy nor a 503: those
are throttling) is narrowed by the engine down to the message at fault (``runners.engine.resilience``).
"""

from __future__ import annotations

import re

from exchangelib.errors import (
    CASError,
    EWSError,
    MalformedResponseError,
    RedirectError,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)

from runners.connectors.ews_wire import HttpRefusal
from runners.errors import AuthError, CommandError, ConnectionLost, MailboxFatal, ProtocolError, TlsError

#: Refusals of one message: the others of the batch are fine.
MESSAGE_CODES = frozenset(
    {
        "ErrorMessageSizeExceeded",
        "ErrorItemCorrupt",
        "ErrorMimeContentConversionFailed",
        "ErrorCorruptData",
        "ErrorInvalidPropertySet",
        "ErrorItemSave",
    }
)
#: Nothing more goes into this mailbox.
MAILBOX_FULL_CODES = frozenset({"ErrorQuotaExceeded"})
#: The service account may not act on this mailbox, or it doesn't exist: that mailbox fails.
MAILBOX_CODES = frozenset(
    {
        "ErrorImpersonateUserDenied",
        "ErrorNonExistentMailbox",
        "ErrorImpersonationDenied",
        "ErrorAccessDenied",
        "ErrorMailboxMoveInProgress",
        "ErrorQuotaExceeded",
    }
)
#: Worth a later retry (after the engine looked the batch up by key).
TRANSIENT_CODES = frozenset(
    {
        "ErrorServerBusy",
        "ErrorInternalServerTransientError",
        "ErrorTimeoutExpired",
        "ErrorTooManyObjectsOpened",
        "ErrorConnectionFailed",
        "ErrorMailboxStoreUnavailable",
    }
)
#: The server's own state, not the request's: busy (its back-off given) or IIS's queue full.
THROTTLED_CODES = frozenset({"ErrorServerBusy", "HTTP 503"})
#: What "too big" looks like when the web server refuses a request before EWS reads it.
HTTP_413 = "HTTP 413"

_STATUS = re.compile(r"Code: (\d{3})")


def code_of(exc: BaseException) -> str:
    """The EWS ResponseCode an exchangelib exception stands for (its class name), or an HTTP status."""
    if isinstance(exc, HttpRefusal):
        return f"HTTP {exc.status}"
    if isinstance(exc, MalformedResponseError):
        status = http_status(exc)
        if status is not None:
            return f"HTTP {status}"
    return type(exc).__name__


def http_status(exc: BaseException) -> int | None:
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def words(exc: BaseException) -> str:
    """The server's words, verbatim (the error classes scrub them): code, then its message text."""
    code = code_of(exc)
    text = str(exc).strip()
    if isinstance(exc, HttpRefusal):
        return text
    if isinstance(exc, MalformedResponseError) and code.startswith("HTTP "):
        # exchangelib's "Unknown failure in response. Code: 413 headers: {...} content: <body>"
        text = text.partition(" content: ")[2].strip() or "Request Entity Too Large"
        return f"{code}: {text[:500]}"
    return f"{code}: {text}" if text and text != code else code


def protocol_error(exc: BaseException, server: str, operation: str, account: str) -> ProtocolError:
    """One of our errors for an exchangelib exception (raised for a whole request or mailbox)."""
    code = code_of(exc)
    if isinstance(exc, UnauthorizedError) or code == "HTTP 401":
        return AuthError(
            server,
            operation,
            f"401 Unauthorized: the server refused the service account {account} (wrong password, locked, "
            "or not allowed to use EWS)",
            "401",
        )
    if isinstance(exc, HttpRefusal) and exc.status < 500:
        return CommandError(server, operation, words(exc), code, status="ERROR")
    if code in MAILBOX_CODES:
        return MailboxFatal(server, operation, words(exc), code)
    if code in TRANSIENT_CODES or code.startswith("HTTP 5"):
        lost = ConnectionLost(server, operation, words(exc), code)
        lost.throttled = code in THROTTLED_CODES  # waited out, never held against one message
        return lost
    if isinstance(exc, TransportError) and "certificate" in str(exc).lower():
        return TlsError(server, operation, str(exc))
    if isinstance(exc, ResponseMessageError | CASError | RedirectError | MalformedResponseError):
        return CommandError(server, operation, words(exc), code, status="ERROR")
    if isinstance(exc, TransportError | EWSError | OSError | HttpRefusal):
        return ConnectionLost(server, operation, words(exc), code)
    return CommandError(server, operation, words(exc), code, status="ERROR")

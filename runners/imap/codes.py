"""What IMAP response codes (RFC 5530) mean for retrying: the IMAP adapter's error classification."""

from __future__ import annotations

from runners.errors import AuthError, CommandError


def is_temporary(code: str | None, operation: str) -> bool:
    """Does an IMAP response code say "not now" rather than "never"?

    INUSE and UNAVAILABLE are always temporary. LIMIT on APPEND is about that one message (too
    large): final for it, and the run goes on; LIMIT elsewhere (too many sessions, commands) passes.
    OVERQUOTA is final for the whole mailbox and is handled by the engine.
    """
    kind = (code or "").upper()
    if kind in {"INUSE", "UNAVAILABLE"}:
        return True
    return kind == "LIMIT" and not operation.startswith("APPEND")


def command_error(
    server: str, operation: str, text: str, code: str | None, status: str = "NO"
) -> CommandError:
    """A refused IMAP command as the error tree's ``CommandError``, classified by its response code.
    A temporary one (INUSE, UNAVAILABLE, a session LIMIT) is the server's state: ``throttled``, never
    held against the message an APPEND carried (``runners.engine.resilience``)."""
    error = CommandError(server, operation, text, code, status, retryable=is_temporary(code, operation))
    error.throttled = error.retryable
    return error


def auth_error(server: str, operation: str, text: str, code: str | None) -> AuthError:
    """A refused IMAP login, retryable only when the server says it is unavailable for now."""
    return AuthError(server, operation, text, code, retryable=is_temporary(code, operation))

"""What a Microsoft Graph error answer means for a migration: retry, skip the message, stop the
mailbox, or stop the run.

Graph answers errors as ``{"error": {"code": "...", "message": "..."}}`` with an HTTP status
(https://learn.microsoft.com/graph/errors). The server's words are kept verbatim (``status code:
message``) in every error and outcome; only the verdict is ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from runners.errors import AuthError, CommandError, MailboxFatal, ProtocolError

#: Codes that mean the mailbox is full (Exchange's words; the status varies by front end).
QUOTA_CODES = frozenset({"ErrorQuotaExceeded", "QuotaExceeded", "ErrorQuotaExceededOnDelete", "MailboxFull"})
#: Codes that mean this message is too large for the mailbox or the request.
SIZE_CODES = frozenset(
    {"RequestEntityTooLarge", "ErrorMessageSizeExceeded", "MessageSizeExceeded", "ErrorRequestTooLarge"}
)
#: Codes of a user that doesn't exist or has no Exchange Online mailbox.
NO_MAILBOX_CODES = frozenset(
    {"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "MailboxNotFound", "ErrorMailboxNotFound"}
)


@dataclass(frozen=True, slots=True)
class GraphFailure:
    """One error answer: HTTP status, Graph's code, its message, and the text we keep."""

    status: int
    code: str
    message: str

    @property
    def text(self) -> str:
        return f"{self.status} {self.code}: {self.message}" if self.code else f"{self.status} {self.message}"

    @property
    def too_large(self) -> bool:
        return self.status == 413 or self.code in SIZE_CODES

    @property
    def over_quota(self) -> bool:
        return self.code in QUOTA_CODES or self.status == 507

    @property
    def no_mailbox(self) -> bool:
        return self.code in NO_MAILBOX_CODES or (self.status == 404 and "mailbox" in self.message.lower())


def failure_of(response: httpx.Response) -> GraphFailure:
    """The error an answer carries, from its JSON body where there is one."""
    code, message = "", ""
    try:
        error = json.loads(response.content).get("error", {})
        code = str(error.get("code", ""))
        message = str(error.get("message", ""))
    except (ValueError, AttributeError):
        message = response.text[:500]
    return GraphFailure(response.status_code, code, message or response.reason_phrase)


def permission_hint(permission: str) -> str:
    return (
        f" (the app needs the application permission {permission}, granted by an admin, and this mailbox "
        "inside the app's scope: RBAC for Applications in Exchange Online)"
    )


def error_for(server: str, operation: str, failure: GraphFailure, permission: str) -> ProtocolError:
    """The error to raise for an answer that stops this operation; ``permission`` is what the
    operation needs (named in a 403)."""
    if failure.status == 401:
        return AuthError(server, operation, failure.text, failure.code or "401", retryable=False)
    if failure.status == 403:
        return MailboxFatal(server, operation, failure.text + permission_hint(permission), "NOPERM")
    if failure.no_mailbox or (failure.status == 404 and operation.startswith("mailbox")):
        return MailboxFatal(server, operation, failure.text, "NOMAILBOX")
    if failure.over_quota:
        return MailboxFatal(server, operation, failure.text, "OVERQUOTA")
    retryable = failure.status >= 500 or failure.status in (408, 429)
    return CommandError(server, operation, failure.text, failure.code or str(failure.status),
                        str(failure.status), retryable=retryable)  # fmt: skip

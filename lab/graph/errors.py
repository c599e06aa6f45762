"""Graph's error answer: ``{"error": {"code", "message", "innerError"}}`` with an HTTP status.

Shape: https://learn.microsoft.com/en-us/graph/errors (JSON representation, "innerError" with
request-id, client-request-id and date).
"""

from __future__ import annotations


class GraphError(Exception):
    """An answer other than success; handlers raise it, the server renders it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        unknown: bool = False,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        #: The request used something the emulator doesn't know (recorded in unknown_requests).
        self.unknown = unknown
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(what: str) -> GraphError:
    """An item or folder id that resolves to nothing (mail resources answer ErrorItemNotFound)."""
    return GraphError(404, "ErrorItemNotFound", f"The specified object was not found in the store. ({what})")


def access_denied(message: str = "Access is denied. Check credentials and try again.") -> GraphError:
    """Mail resources without the role, or a mailbox outside the app's RBAC scope."""
    return GraphError(403, "ErrorAccessDenied", message)

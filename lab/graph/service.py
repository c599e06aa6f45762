"""One request from the wire to its answer: routing, authentication, mailbox resolution, throttling,
faults, and Graph's error shape. The HTTP server and $batch both come through here."""

from __future__ import annotations

import datetime as dt
import re
import traceback
import uuid
from urllib.parse import parse_qsl, unquote, urlsplit

from lab.graph import attachments, auth
from lab.graph.config import AppConfig
from lab.graph.context import Call, Reply, SubRequest, Tenant
from lab.graph.directory import check_mailbox_scope
from lab.graph.errors import GraphError
from lab.graph.odata import ODataError
from lab.graph.routes import match, normalise
from lab.graph.tokens import TokenError

VERSIONS = ("v1.0", "beta")
_UPLOAD_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_reply(error: GraphError, request_id: str | None = None) -> Reply:
    """https://learn.microsoft.com/en-us/graph/errors: code, message, innerError."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    request_id = request_id or str(uuid.uuid4())
    inner: dict[str, str] = {"date": now, "request-id": request_id, "client-request-id": request_id}
    if error.status == 429:
        # https://learn.microsoft.com/en-us/graph/throttling, "Sample response".
        inner.update({"code": "429", "message": "Please retry after", "status": "429"})
    body = {"error": {"code": error.code, "message": error.message, "innerError": inner}}
    return Reply(error.status, body, headers=dict(error.headers))


class Service:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        tenant.dispatch = self.dispatch

    # ---- the wire -------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes, base_url: str) -> Reply:
        """Answer one HTTP request (headers with lower-case names). A fault of the emulator itself
        is a 500 generalException, kept in tenant.internal_errors for the test to see."""
        try:
            return self._handle(method, target, headers, body, base_url)
        except Exception:  # the emulator's own bug: answered, and kept for the test
            self.tenant.record_internal_error(f"{method} {urlsplit(target).path}\n{traceback.format_exc()}")
            return error_reply(GraphError(500, "generalException", "An internal error of the emulator."))

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes, base_url: str) -> Reply:
        path = urlsplit(target).path
        segments = [unquote(s) for s in path.strip("/").split("/")]
        tenant_id = self.tenant.config.tenant_id
        if segments[0] == tenant_id or segments[0].lower() in ("organizations", "common"):
            return self._identity(method, segments, body, base_url)
        session = _upload_session_id(segments)
        if session is not None:
            return self._upload(method, session, target, headers, body, base_url)
        if segments[0] in VERSIONS:
            if len(body) > self.tenant.config.limits.request_bytes:
                return error_reply(
                    GraphError(413, "RequestEntityTooLarge", "The request size exceeds the maximum limit.")
                )
            try:
                app, roles = self._authenticate(headers)
            except GraphError as error:
                return error_reply(error)
            rest = target[len("/" + segments[0]) :]
            return self.dispatch(SubRequest(method, segments[0], rest, headers, body, app, roles, base_url))
        self.tenant.record_unknown(f"{method} {path}")
        return error_reply(GraphError(400, "BadRequest", f"Invalid version: {segments[0]}"))

    def _identity(self, method: str, segments: list[str], body: bytes, base_url: str) -> Reply:
        tail = "/".join(segments[1:])
        tenant_id = self.tenant.config.tenant_id
        if segments[0] != tenant_id:
            return auth.oauth_error(400, "invalid_tenant", 90002, f"Tenant '{segments[0]}' not found.")
        if method == "GET" and tail == "v2.0/.well-known/openid-configuration":
            return auth.openid_configuration(self.tenant, base_url)
        if method == "POST" and tail == "oauth2/v2.0/token":
            return auth.token(self.tenant, body, f"{base_url}/{tenant_id}/oauth2/v2.0/token")
        self.tenant.record_unknown(f"{method} /{'/'.join(segments)}")
        return auth.oauth_error(404, "invalid_request", 90010, "The endpoint is not served by the emulator.")

    def _authenticate(self, headers: dict[str, str]) -> tuple[AppConfig, frozenset[str]]:
        """Every Graph request needs a valid bearer token (https://learn.microsoft.com/en-us/graph/auth/auth-concepts)."""
        value = headers.get("authorization", "")
        if not value:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", _challenge())
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
                _challenge(),
            )
        try:
            claims = self.tenant.minter.check(token.strip())
        except TokenError as exc:
            message = (
                "Lifetime validation failed, the token is expired."
                if "expired" in str(exc)
                else f"Access token validation failure. {exc}"
            )
            raise GraphError(401, "InvalidAuthenticationToken", message, _challenge()) from exc
        app = self.tenant.config.app(claims.app_id)
        if app is None:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Unknown application.",
                _challenge(),
            )
        return app, claims.roles

    def _upload(
        self, method: str, session_id: str, target: str, headers: dict[str, str], body: bytes, base_url: str
    ) -> Reply:
        query = dict(parse_qsl(urlsplit(target).query))
        try:
            if method not in ("PUT", "DELETE"):
                raise GraphError(
                    405, "MethodNotAllowed", "An upload URL takes PUT (and DELETE).", unknown=True
                )
            if len(body) > self.tenant.config.limits.upload_chunk_max:
                raise GraphError(413, "RequestEntityTooLarge", "The request size exceeds the maximum limit.")
            session = attachments.find_session(self.tenant, session_id, query.get("authtoken", ""))
            if method == "DELETE":
                return attachments.cancel_session(self.tenant, session)
            self.tenant.throttle.admit(session.app_id, session.mailbox, len(body))
            try:
                return attachments.upload_chunk(self.tenant, session, headers, body, base_url)
            finally:
                self.tenant.throttle.release(session.app_id, session.mailbox)
        except GraphError as error:
            if error.unknown:
                self.tenant.record_unknown(f"{method} upload URL: {error.message}")
            return error_reply(error)

    # ---- one Graph request (top level or inside a batch) ------------------------------------------

    def dispatch(self, request: SubRequest) -> Reply:
        tenant = self.tenant
        split = urlsplit(request.url)
        segments = normalise([unquote(s) for s in split.path.strip("/").split("/")])
        call = Call(
            request.method,
            request.version,
            segments,
            {},
            request.headers,
            request.body,
            request.app,
            request.roles,
            request.base_url,
            parsed_body=request.parsed_body,
        )
        reply = self._answer(call, request, split.query)
        tenant.log(call.mailbox.address if call.mailbox is not None else None, reply.status)
        return reply

    def _answer(self, call: Call, request: SubRequest, query: str) -> Reply:
        tenant = self.tenant
        segments = call.segments
        mailbox_address = None
        try:
            for name, value in parse_qsl(query, keep_blank_values=True):
                if name in call.query:
                    raise GraphError(
                        400,
                        "BadRequest",
                        f"Query option '{name}' was specified more than once. It must be specified at most once.",
                        unknown=True,
                    )
                call.query[name] = value
            route, params, path_known = match(request.method, segments)
            if route is None or request.version not in route.versions:
                raise self._no_route(request, segments, path_known and route is None)
            if route.kind == "mail":
                mailbox_address = self._resolve_mailbox(call, params["user"])
            if mailbox_address is None:
                return route.handler(tenant, call, params)
            tenant.throttle.admit(
                request.app.client_id,
                mailbox_address,
                len(request.body) if request.method in _UPLOAD_METHODS else 0,
            )
            try:
                fault = tenant.faults.before(mailbox_address)
                if fault is not None:
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    raise GraphError(
                        503, "ServiceUnavailable", "The service is temporarily unavailable.", headers
                    )
                reply = route.handler(tenant, call, params)
            finally:
                tenant.throttle.release(request.app.client_id, mailbox_address)
            if reply.created is not None and tenant.faults.drop_after_create(mailbox_address):
                tenant.faults.dropped.append(reply.created)
                reply.drop = True
            return reply
        except ODataError as exc:
            tenant.record_unknown(f"{request.method} /{request.version}{request.url}: {exc}")
            return error_reply(GraphError(400, "BadRequest", str(exc)))
        except GraphError as error:
            if error.unknown:
                tenant.record_unknown(f"{request.method} /{request.version}{request.url}: {error.message}")
            return error_reply(error)

    def _no_route(self, request: SubRequest, segments: list[str], path_known: bool) -> GraphError:
        if segments and segments[0].lower() == "me":
            return GraphError(
                400,
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
                unknown=True,
            )
        last = segments[-1] if segments else ""
        if path_known:
            return GraphError(
                405,
                "MethodNotAllowed",
                f"The HTTP method '{request.method}' is not allowed on this resource.",
                unknown=True,
            )
        return GraphError(400, "BadRequest", f"Resource not found for the segment '{last}'.", unknown=True)

    def _resolve_mailbox(self, call: Call, user_ref: str) -> str:
        """The mailbox behind /users/{id}: unknown user 404 ErrorInvalidUser, outside the app's
        scope 403, no mailbox 404 MailboxNotEnabledForRESTAPI (the service's answers)."""
        user = self.tenant.user(user_ref)
        if user is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user_ref}' is invalid.")
        check_mailbox_scope(call, user.address)
        mailbox = self.tenant.mailboxes.get(user.address.lower())
        if mailbox is None:
            raise GraphError(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        call.mailbox = mailbox
        return mailbox.address


def _upload_session_id(segments: list[str]) -> str | None:
    """The session of an upload URL: /api/v2.0/Users('…')/Messages('…')/AttachmentSessions('…')."""
    if len(segments) == 5 and segments[:2] == ["api", "v2.0"]:
        match = re.fullmatch(r"AttachmentSessions\('([^']+)'\)", segments[4])
        if match is not None:
            return match.group(1)
    return None


def _challenge() -> dict[str, str]:
    return {
        "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
    }

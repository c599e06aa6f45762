"""The HTTPS front of the emulator: IIS and the EWS pipeline as a client meets them.

In the order Exchange applies them: the request size limit (IIS request filtering, before any
authentication: 413), authentication (401 naming the schemes offered), the caller's concurrency
budget (EWSMaxConcurrency: ErrorServerBusy), schema validation (ErrorSchemaValidation), the
impersonation header (ErrorNonExistentMailbox, ErrorImpersonateUserDenied), then the operation.
Faults a test injected come between validation and the operation (503, slow, ErrorServerBusy) or
after it (a dropped connection once the operation has succeeded).
"""

from __future__ import annotations

import base64
import binascii
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lab.ews import directory, folders, items
from lab.ews.autodiscover import autodiscover_answer
from lab.ews.context import Context, HangUp, Unmodelled
from lab.ews.engine import INJECTION_KINDS, Engine, Injection
from lab.ews.ntlm import Handshake
from lab.ews.schema import validate
from lab.ews.soap import (
    ItemError,
    SoapFault,
    element,
    fault,
    parse,
    q,
    response,
    response_body,
    short,
    text_of,
)

EWS_PATH = "/ews/exchange.asmx"
OPERATIONS: dict[str, Callable[[Context, ET.Element], list[str]]] = {
    "GetFolder": folders.get_folder,
    "FindFolder": folders.find_folder,
    "CreateFolder": folders.create_folder,
    "CreateItem": items.create_item,
    "FindItem": items.find_item,
    "GetItem": items.get_item,
    "UpdateItem": items.update_item,
    "GetAttachment": items.get_attachment,
    "GetMailTips": directory.get_mail_tips,
    "ResolveNames": directory.resolve_names,
    "ConvertId": directory.convert_id,
}
#: RequestServerVersion values (ExchangeVersionType; RequestServerVersion page:
#: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/requestserverversion).
REQUEST_VERSIONS = frozenset(
    "Exchange2007 Exchange2007_SP1 Exchange2010 Exchange2010_SP1 Exchange2010_SP2 Exchange2013 "
    "Exchange2013_SP1 Exchange2015 Exchange2016 V2015_10_05 V2016_01_06 V2016_04_13 V2016_07_13 "
    "V2016_10_10 V2017_01_07 V2017_04_14 V2017_07_11".split()
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    engine: Engine
    tls: Any

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # The TLS handshake happens in the handler's thread (setup), so one slow client does not
        # hold up the accept loop.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as IIS
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    server: _Server
    # NTLM authenticates the connection, and a handler serves one connection.
    _handshake: Handshake | None = None
    _ntlm_user: str | None = None

    def setup(self) -> None:
        self.request.settimeout(30)
        try:
            self.request.do_handshake()
        except (OSError, ValueError):
            self.close_connection = True
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: tests read the counters, not a log (and a log could show an Authorization header)."""

    # -- HTTP ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._send(405, b"", "text/plain")

    def do_POST(self) -> None:
        engine = self.server.engine
        path = self.path.split("?", 1)[0].lower()
        length = self._length()
        if length is None:
            return
        if length > engine.config.request_limit:
            # IIS request filtering (maxAllowedContentLength) refuses before authentication; the
            # client has sent the body, so it is read and thrown away before the answer.
            self._drain(length)
            self.close_connection = True
            self._send(413, b"", "text/html")
            return
        body = self.rfile.read(length)
        user = self._authenticated()
        if user is None:
            return
        if path in ("/autodiscover/autodiscover.svc", "/autodiscover/autodiscover.xml"):
            status, answer, content_type = autodiscover_answer(engine, path, body, user)
            self._send(status, answer, content_type)
            return
        if path != EWS_PATH:
            self.server.engine.record_unknown(f"POST to an unknown path: {path}")
            self._send(404, b"", "text/html")
            return
        self._ews(user, body)

    def _length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._send(411, b"", "text/html")
            return None
        return length

    def _drain(self, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _authenticated(self) -> str | None:
        """The logon name, or None once 401 has been answered: Basic per request, or NTLM per
        connection (``lab.ews.ntlm``)."""
        config = self.server.engine.config
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if self._ntlm_user is not None and not header:
            return self._ntlm_user
        if scheme.lower() in ("ntlm", "negotiate") and "ntlm" in config.auth_modes:
            return self._ntlm(token.strip())
        if scheme.lower() == "basic" and "basic" in config.auth_modes:
            try:
                user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                user, password = "", ""
            expected = config.password_of(user)
            if expected is not None and expected == password:
                return user
        self._send(401, b"", "text/html", self._challenges())
        return None

    def _challenges(self) -> list[str]:
        modes = self.server.engine.config.auth_modes
        challenges = ["Negotiate", "NTLM"] if "ntlm" in modes else []
        if "basic" in modes:
            challenges.append(f'Basic realm="{self.server.engine.base_url.partition("://")[2]}"')
        return challenges

    def _ntlm(self, token: str) -> str | None:
        handshake = self._handshake
        if handshake is None:
            handshake = self._handshake = Handshake()
        try:
            challenge, principal = handshake.step(token)
        except ValueError:
            self._handshake = None
            self._send(401, b"", "text/html", self._challenges())
            return None
        if challenge is not None:
            self._send(401, b"", "text/html", [f"NTLM {challenge}"])
            return None
        self._handshake = None
        user = next(
            (
                name
                for name in self.server.engine.config.accounts
                if name.lower() == (principal or "").lower()
            ),
            None,
        )
        if user is None:
            self._send(401, b"", "text/html", self._challenges())
            return None
        self._ntlm_user = user
        return user

    def _send(self, status: int, body: bytes, content_type: str, challenges: list[str] | None = None) -> None:
        with self.server.engine.lock:
            self.server.engine.statuses[status] += 1
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for challenge in challenges or ():
            self.send_header("WWW-Authenticate", challenge)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    # -- EWS -----------------------------------------------------------------------------------

    def _ews(self, user: str, body: bytes) -> None:
        engine = self.server.engine
        version = engine.config.version
        with engine.lock:
            busy = engine.in_flight[user.lower()] >= engine.config.max_concurrency
            if not busy:
                engine.in_flight[user.lower()] += 1
        if busy:
            # Over EWSMaxConcurrency: Exchange 2013 and later answer ErrorServerBusy with the
            # policy and BackOffMilliseconds in MessageXml (as seen from Exchange; the throttling
            # page's table names ErrorExceededConnectionCount for this budget, observed answers
            # carry ErrorServerBusy: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange).
            limit = engine.config.max_concurrency
            exc = SoapFault(
                "ErrorServerBusy",
                "You have exceeded the available concurrent connections for your account. "
                "Try again once your other requests have completed.",
                values=(
                    ("Policy", "MaxConcurrency"),
                    ("MaxConcurrencyLimit", str(limit)),
                    ("BackOffMilliseconds", str(engine.config.concurrency_back_off_ms)),
                ),
            )
            with engine.lock:
                engine.requests["(throttled)"] += 1
            self._send(500, fault(version, exc), "text/xml; charset=utf-8")
            return
        try:
            self._operation(user, body)
        finally:
            with engine.lock:
                engine.in_flight[user.lower()] -= 1

    def _operation(self, user: str, body: bytes) -> None:
        engine = self.server.engine
        version = engine.config.version
        operation = "(unparsed)"
        try:
            envelope = parse(body)
            operation = _operation_name(envelope)
            with engine.lock:
                engine.requests[operation] += 1
            validate(envelope)
            context = _context(engine, user, envelope)
        except SoapFault as exc:
            self._refuse(operation, exc)
            return
        if self._injected_before(operation):
            return
        try:
            messages = OPERATIONS[operation](context, envelope.find(q("s:Body"))[0])  # type: ignore[index]
        except SoapFault as exc:
            self._refuse(operation, exc)
            return
        except HangUp:
            self._hang_up()
            return
        if operation == "GetMailTips":
            # GetMailTipsResponse carries its own ResponseClass and ResponseCode around the
            # ResponseMessages (the GetMailTips page's example).
            answer = response_body(
                version,
                operation,
                element("m:ResponseCode", text="NoError"),
                element("m:ResponseMessages", None, *messages),
                attrs={"ResponseClass": "Success"},
            )
        else:
            answer = response(version, operation, messages)
        drop = engine.take_injection(operation, ("drop_after",))
        if drop is not None:
            # The duplicate trap: the operation took effect, the client never hears of it.
            self._hang_up()
            return
        self._send(200, answer, "text/xml; charset=utf-8")

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _refuse(self, operation: str, exc: SoapFault) -> None:
        engine = self.server.engine
        if exc.code == "ErrorSchemaValidation" or isinstance(exc, Unmodelled):
            engine.record_unknown(f"{operation}: {exc.violation or exc.message}")
        self._send(500, fault(engine.config.version, exc), "text/xml; charset=utf-8")

    def _injected_before(self, operation: str) -> bool:
        engine = self.server.engine
        injection = engine.take_injection(operation, ("hold", "http_503", "slow", "server_busy"))
        if injection is None:
            return False
        if injection.kind == "hold":
            assert injection.gate is not None
            injection.gate.wait(60)
            return False
        if injection.kind == "slow":
            time.sleep(injection.seconds)
            return False
        if injection.kind == "http_503":
            self._send(503, b"<html><body>Service Unavailable</body></html>", "text/html")
            return True
        exc = SoapFault(
            "ErrorServerBusy",
            "The server cannot service this request right now. Try again later.",
            values=(("BackOffMilliseconds", str(injection.back_off_ms)),),
        )
        self._send(500, fault(engine.config.version, exc), "text/xml; charset=utf-8")
        return True


def _operation_name(envelope: ET.Element) -> str:
    body = envelope.find(q("s:Body"))
    if envelope.tag != q("s:Envelope") or body is None or len(body) != 1:
        return "(no operation)"
    return short(body[0].tag).partition(":")[2] or short(body[0].tag)


def _context(engine: Engine, user: str, envelope: ET.Element) -> Context:
    """Who the request acts for, from its SOAP header (ExchangeImpersonation page:
    https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/exchangeimpersonation)."""
    header = envelope.find(q("s:Header"))
    requested = header.find(q("t:RequestServerVersion")) if header is not None else None
    if requested is not None and requested.get("Version") not in REQUEST_VERSIONS:
        raise SoapFault("ErrorInvalidServerVersion", "The specified server version is invalid.")
    sid = (
        header.find(f"{q('t:ExchangeImpersonation')}/{q('t:ConnectingSID')}") if header is not None else None
    )
    config = engine.config
    if sid is not None:
        if len(sid) != 1:
            raise SoapFault(
                "ErrorSchemaValidation",
                "The request failed schema validation.",
                violation="ConnectingSID must hold exactly one identifier.",
            )
        address = text_of(sid[0])
        found = config.mailbox(address)
        if found is None:
            raise SoapFault(
                "ErrorNonExistentMailbox",
                "The SMTP address has no mailbox associated with it.",
                values=(("SmtpAddress", address),),
            )
        if not config.may_impersonate(user, found[0]):
            raise SoapFault(
                "ErrorImpersonateUserDenied",
                "The account does not have permission to impersonate the requested user.",
            )
        mailbox: str | None = found[0]
    else:
        own = config.mailbox(user)
        mailbox = own[0] if own else None
    operation = _operation_name(envelope)
    return Context(
        config,
        engine.store,
        user,
        mailbox,
        engine.now,
        lambda: engine.take_item_fault(operation),
        engine.poisoned,
    )


def serve(engine: Engine, tls: Any, host: str) -> _Server:
    server = _Server((host, 0), Handler)
    server.engine = engine
    server.tls = tls
    return server


__all__ = ["INJECTION_KINDS", "Engine", "Injection", "ItemError", "serve"]

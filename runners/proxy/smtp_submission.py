"""SMTP submission (587 STARTTLS, 465 implicit TLS): the proxy takes EHLO, STARTTLS and AUTH, then pipes.

The client authenticates to the proxy with AUTH PLAIN or LOGIN; the proxy routes the login
(``Router.route_user``), logs in on that backend's submission endpoint with the route's
``backend_login``, passes the backend's answer back (its code and words, scrubbed of secrets), tells
every observer, and on ``235`` hands both connections to the relay. From then on the client talks to
the backend through the proxy (MAIL, RCPT, DATA are the backend's to judge).

AUTH is offered only inside TLS, except to a client on a loopback address when the plan's
``plain_auth_from_loopback`` allows it (a webmail on the same host has nothing to eavesdrop on).
The proxy's EHLO is its own (it doesn't know the backend before AUTH): PIPELINING, SIZE (the plan's
``max_message_bytes``), 8BITMIME, ENHANCEDSTATUSCODES, STARTTLS and AUTH; the backend enforces its own
limits after login and its refusals reach the client verbatim.
"""

from __future__ import annotations

import asyncio
import logging

from runners.proxy.addresses import is_loopback
from runners.proxy.backend_connect import BackendUnavailable
from runners.proxy.contracts import LoginEvent, Outcome, Password, Route, Service, TlsMode
from runners.proxy.smtp_backend import LoggedIn, log_in
from runners.proxy.smtp_io import Reply
from runners.proxy.smtp_parse import decode_b64_text, decode_plain, helo_name, parse_command
from runners.proxy.smtp_session import SmtpClient, SmtpProxy, answer_hello, banner, deadlines
from runners.safe_text import safe

log = logging.getLogger(__name__)

_USERNAME_PROMPT = "VXNlcm5hbWU6"  # base64 of "Username:"
_PASSWORD_PROMPT = "UGFzc3dvcmQ6"  # noqa: S105 - base64 of "Password:", the prompt


class _Cancelled(Exception):
    """The client ended the SASL exchange (``*``), sent bad base64, or left (code 0: nothing to answer)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


async def serve_submission(proxy: SmtpProxy, listener_tls: TlsMode, conn: SmtpClient) -> None:
    """One client's session, from the banner to QUIT or the end of the relay."""
    session = _Submission(proxy, listener_tls, conn)
    try:
        await session.run()
    finally:
        await conn.close()


class _Submission:
    def __init__(self, proxy: SmtpProxy, listener_tls: TlsMode, conn: SmtpClient) -> None:
        self.proxy = proxy
        self.settings = proxy.settings
        self.listener_tls = listener_tls
        self.conn = conn
        self.helo: str | None = None
        self.auth_failures = 0
        self.closing = False  # too many failed logins: 421 said, hang up

    @property
    def auth_allowed(self) -> bool:
        return self.conn.tls or (self.settings.plain_auth_from_loopback and is_loopback(self.conn.address))

    @property
    def starttls_offered(self) -> bool:
        return (
            not self.conn.tls and self.listener_tls is TlsMode.STARTTLS and self.proxy.tls_context is not None
        )

    async def run(self) -> None:
        await self.conn.send_raw(banner(self.settings))
        while (line := await self.conn.read()) is not None:
            if line.too_long:
                if not await self.conn.bad_command(500, "5.5.2 line too long"):
                    return
                continue
            command = parse_command(line.data)
            verb = command.verb
            if verb in ("EHLO", "HELO"):
                await self._hello(verb, command.arg)
            elif verb == "STARTTLS":
                context = self.proxy.tls_context
                if context is None or not self.starttls_offered:
                    await self.conn.send(503, "5.5.1 TLS already active or not offered")
                    continue
                if not await self.conn.starttls(context):
                    return
                self.helo = None  # RFC 3207 4.2: the client starts over with EHLO
            elif verb == "AUTH":
                if await self._auth(command.arg):
                    return  # relayed until the end, or hung up after too many failures
            elif verb == "NOOP":
                await self.conn.send(250, "2.0.0 OK")
            elif verb == "RSET":
                await self.conn.send(250, "2.0.0 OK")
            elif verb == "QUIT":
                await self.conn.send(221, "2.0.0 bye")
                return
            elif verb in ("MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN"):
                if not await self.conn.bad_command(530, "5.7.0 authentication required"):
                    return
            elif not await self.conn.bad_command(
                500 if not verb else 502,
                "5.5.2 syntax error" if not verb else "5.5.1 command not implemented",
            ):
                return

    async def _hello(self, verb: str, arg: str) -> None:
        if not arg:
            await self.conn.send(501, f"5.5.4 {verb} needs a domain or address")
            return
        self.helo = helo_name(arg)
        extensions = ["STARTTLS"] if self.starttls_offered else []
        if self.auth_allowed:
            extensions.append("AUTH PLAIN LOGIN")
        await answer_hello(self.conn, self.settings, verb, extensions)

    async def _auth(self, arg: str) -> bool:
        """One AUTH exchange; True when the session is over (relayed, or too many failures)."""
        if self.helo is None:
            await self.conn.send(503, "5.5.1 EHLO first")
            return False
        if not self.auth_allowed:
            await self.conn.send(538, "5.7.11 encryption required: STARTTLS first")
            return False
        mechanism, _, initial = arg.partition(" ")
        try:
            credentials = await self._sasl(mechanism.upper(), initial.strip())
        except _Cancelled as stop:
            if stop.code:
                await self.conn.send(stop.code, stop.text)
            return stop.code in (0, 421)
        if credentials is None:
            return self.closing
        login, password = credentials
        return await self._login(login, Password(password))

    async def _sasl(self, mechanism: str, initial: str) -> tuple[str, str] | None:
        if mechanism == "PLAIN":
            response = initial or await self._challenge("")
            decoded = decode_plain(response)
            if decoded is None:
                raise _Cancelled(501, "5.5.2 malformed AUTH PLAIN response")
            authzid, login, password = decoded
            if authzid and authzid != login:
                await self._refuse(login, "authorization identity differs from the login", 535,
                                   "5.7.8 authorization identity not supported")  # fmt: skip
                return None
            return login, password
        if mechanism == "LOGIN":
            user = decode_b64_text(initial or await self._challenge(_USERNAME_PROMPT))
            if not user:
                raise _Cancelled(501, "5.5.2 malformed AUTH LOGIN response")
            secret = decode_b64_text(await self._challenge(_PASSWORD_PROMPT))
            if not secret:
                raise _Cancelled(501, "5.5.2 malformed AUTH LOGIN response")
            return user, secret
        raise _Cancelled(504, "5.5.4 mechanism not supported (PLAIN, LOGIN)")

    async def _challenge(self, prompt: str) -> str:
        await self.conn.send_raw(f"334 {prompt}\r\n".encode())
        line = await self.conn.read()
        if line is None:  # the client left, or stayed silent and was told 421 already
            raise _Cancelled(0, "")
        if line.too_long:
            raise _Cancelled(500, "5.5.2 line too long")
        text = line.data.rstrip(b"\r\n").decode("ascii", "replace")
        if text == "*":
            raise _Cancelled(501, "5.7.0 authentication cancelled")
        return text

    async def _login(self, login: str, password: Password) -> bool:
        try:
            route: Route | None = await self.proxy.router.route_user(login)
        except Exception as exc:  # a router's failure (directory down) must not kill the session
            log.warning("routing %s failed: %s", safe(login), safe(type(exc).__name__))
            route = None
        if route is None:
            return await self._unavailable(login, None, "the router could not route the login")
        backend = self.proxy.backends.get(route.backend)
        endpoint = None if backend is None else backend.endpoints.get(Service.SUBMISSION)
        if endpoint is None:
            return await self._unavailable(
                login, route, f"backend {route.backend} has no submission endpoint"
            )
        task = self.conn.task
        # The whole dialogue has one deadline, kept by one timer for all sessions.
        deadline = deadlines(self.settings.backend_timeout_seconds, task.get_loop())
        deadline.start(task)
        try:
            answer, session = await log_in(endpoint, self.helo or self.settings.hostname,
                                           route.backend_login, password.reveal())  # fmt: skip
        except asyncio.CancelledError:
            if not deadline.expired(task):
                raise
            why: str | None = "no answer in time"
        except BackendUnavailable as exc:
            why = str(exc)
        else:
            why = None
        finally:
            deadline.stop(task)
        if why is not None:
            return await self._unavailable(login, route, f"{route.backend}: {why}")
        if answer.code == 235:
            await self._accepted(login, route, password, answer, session)
            return True
        await session.close()
        if 500 <= answer.code < 600:
            return await self._rejected(login, route, answer)
        # A 4xx (or a reply that makes no sense here) says nothing about the password: try again later.
        words = f"{route.backend}: {answer.code} {answer.text}"
        return await self._unavailable(login, route, words, answer if 400 <= answer.code < 500 else None)

    async def _accepted(
        self, login: str, route: Route, password: Password, answer: Reply, session: LoggedIn
    ) -> None:
        event = LoginEvent(Service.SUBMISSION, self.conn.address, login, route, Outcome.ACCEPTED,
                           f"{answer.code} {answer.text}")  # fmt: skip
        await self.proxy.tell_observers(event, password)
        await self.conn.send(235, *answer.lines)
        await self.proxy.relay(self.conn.leg(), session.leg, self.proxy.stop)

    async def _rejected(self, login: str, route: Route, answer: Reply) -> bool:
        event = LoginEvent(Service.SUBMISSION, self.conn.address, login, route, Outcome.REJECTED,
                           f"{answer.code} {answer.text}")  # fmt: skip
        await self.proxy.tell_observers(event, None)
        await self.conn.send(answer.code, *answer.lines)
        return await self._count_failure()

    async def _unavailable(
        self, login: str, route: Route | None, why: str, answer: Reply | None = None
    ) -> bool:
        """Observers told UNAVAILABLE; the client gets the backend's 4xx, or ``454 4.3.0``."""
        log.info("submission login of %s: %s", safe(login), safe(why))
        event = LoginEvent(
            Service.SUBMISSION, self.conn.address, login, route, Outcome.UNAVAILABLE, safe(why)
        )
        await self.proxy.tell_observers(event, None)
        if answer is not None:
            await self.conn.send(answer.code, *answer.lines)
        else:
            await self.conn.send(454, "4.3.0 mail service temporarily unavailable, try again later")
        return False

    async def _refuse(self, login: str, why: str, code: int, text: str) -> None:
        event = LoginEvent(Service.SUBMISSION, self.conn.address, login, None, Outcome.BLOCKED, why)
        await self.proxy.tell_observers(event, None)
        await self.conn.send(code, text)
        await self._count_failure()

    async def _count_failure(self) -> bool:
        self.auth_failures += 1
        if self.auth_failures >= self.settings.max_auth_failures:
            await self.conn.send(421, "4.7.0 too many failed logins, closing")
            self.closing = True
        return self.closing

"""Inbound SMTP (port 25), routed per recipient: each RCPT goes where ``Router.route_recipient`` says.

For each backend a transaction touches, the proxy opens a session with that backend's SMTP endpoint
(MAIL FROM the client's sender) and asks it about each of its recipients, so the backend's own answer
(``550 no such user``) reaches the sender. An address no backend knows is ``550 5.1.1``.

Without store-and-forward, a transaction stays on the first backend that accepted a recipient: the
others are answered ``451 4.3.0`` and the sender retries them in a transaction of their own; the
message is then streamed to that backend and its answer to the final dot is the sender's answer.
With store-and-forward, recipients of every backend are accepted (a backend that is down can't be
asked: its recipients are taken on the router's word); a transaction on one reachable backend is still
streamed to it, any other is written to the spool (fsync'd) before ``250``, then delivered by the
spool's delivery loop. The proxy never says ``250`` for a message that isn't with a backend or on disk.

Bad input: command lines over 2048 octets (500), text lines over 1000 octets and bare CR or LF in the
message (the message is refused after its end, and the partial copy at the backend is abandoned by
dropping the connection before its final dot: no SMTP smuggling through the proxy), SIZE (552),
too many recipients (452), anything pipelined behind STARTTLS (discarded). PIPELINING is advertised:
commands are answered strictly in order, which is all RFC 2920 asks of a server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from email.utils import formatdate

from runners.proxy.backend_connect import BackendUnavailable
from runners.proxy.contracts import Route, Service, TlsMode
from runners.proxy.smtp_backend import BackendSession, mail_from, open_session
from runners.proxy.smtp_data import BackendSink, SpoolSink, receive_message
from runners.proxy.smtp_io import Reply
from runners.proxy.smtp_parse import MailPath, encode, helo_name, parse_command, parse_mail_path, size_param
from runners.proxy.smtp_session import ClientConnection, SmtpProxy, answer_hello, banner
from runners.proxy.spool import Recipient, Spool
from runners.safe_text import safe

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Transaction:
    sender: MailPath
    body: str | None  # BODY=7BIT | 8BITMIME, or None
    #: Accepted recipients, in order, with their routes.
    recipients: list[tuple[str, Route]] = field(default_factory=list)
    #: Per backend: an open session (MAIL accepted), the backend's refusal of MAIL, or None (unreachable).
    backends: dict[str, BackendSession | Reply | None] = field(default_factory=dict)


async def serve_inbound(proxy: SmtpProxy, listener_tls: TlsMode, conn: ClientConnection, spool: Spool | None,
                        spooled: asyncio.Event | None) -> None:  # fmt: skip
    """One sending server's session, from the banner to QUIT. ``spooled`` is set after each spooled message."""
    session = _Inbound(proxy, listener_tls, conn, spool, spooled)
    try:
        await session.run()
    finally:
        await session.end_transaction()
        await conn.close()


class _Inbound:
    def __init__(self, proxy: SmtpProxy, listener_tls: TlsMode, conn: ClientConnection, spool: Spool | None,
                 spooled: asyncio.Event | None) -> None:  # fmt: skip
        self.proxy = proxy
        self.settings = proxy.settings
        self.listener_tls = listener_tls
        self.conn = conn
        self.spool = spool if self.settings.store_and_forward else None
        self.spooled = spooled
        self.helo: str | None = None
        self.txn: _Transaction | None = None

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
            if not await self._dispatch(command.verb, command.arg):
                return

    async def _dispatch(self, verb: str, arg: str) -> bool:
        """Answer one command; False when the session is over."""
        if verb in ("EHLO", "HELO"):
            await self._hello(verb, arg)
        elif verb == "STARTTLS":
            context = self.proxy.tls_context
            if context is None or not self.starttls_offered:
                await self.conn.send(503, "5.5.1 TLS already active or not offered")
                return True
            await self.end_transaction()
            if not await self.conn.starttls(context):
                return False
            self.helo = None
        elif verb == "MAIL":
            await self._mail(arg)
        elif verb == "RCPT":
            await self._rcpt(arg)
        elif verb == "DATA":
            return await self._data()
        elif verb == "RSET":
            await self.end_transaction()
            await self.conn.send(250, "2.0.0 OK")
        elif verb == "NOOP":
            await self.conn.send(250, "2.0.0 OK")
        elif verb == "VRFY":
            await self.conn.send(252, "2.5.0 cannot verify, send mail and see")
        elif verb == "QUIT":
            await self.conn.send(221, "2.0.0 bye")
            return False
        elif verb in ("AUTH", "BDAT", "EXPN", "ETRN", "TURN"):
            return await self.conn.bad_command(502, "5.5.1 not available on this port")
        else:
            return await self.conn.bad_command(500 if not verb else 502,
                                               "5.5.2 syntax error" if not verb else "5.5.1 command not implemented")  # fmt: skip
        return True

    async def _hello(self, verb: str, arg: str) -> None:
        if not arg:
            await self.conn.send(501, f"5.5.4 {verb} needs a domain or address")
            return
        await self.end_transaction()
        self.helo = helo_name(arg)
        await answer_hello(self.conn, self.settings, verb, ["STARTTLS"] if self.starttls_offered else [])

    async def _mail(self, arg: str) -> None:
        if self.helo is None:
            await self.conn.send(503, "5.5.1 EHLO or HELO first")
            return
        if self.txn is not None:
            await self.conn.send(503, "5.5.1 nested MAIL command")
            return
        path = parse_mail_path(arg, "FROM")
        if path is None:
            await self.conn.send(501, "5.1.7 bad sender address syntax")
            return
        unknown = set(path.params) - {"SIZE", "BODY"}
        if unknown:
            await self.conn.send(555, f"5.5.4 unsupported parameter {sorted(unknown)[0]}")
            return
        size = size_param(path)
        if "SIZE" in path.params and size is None:
            await self.conn.send(501, "5.5.4 SIZE needs a number")
            return
        if size is not None and size > self.settings.max_message_bytes:
            await self.conn.send(
                552, f"5.3.4 message too big (at most {self.settings.max_message_bytes} octets)"
            )
            return
        body = path.params.get("BODY")
        if body is not None and body.upper() not in ("7BIT", "8BITMIME"):
            await self.conn.send(501, "5.5.4 BODY is 7BIT or 8BITMIME")
            return
        self.txn = _Transaction(path, None if body is None else body.upper())
        await self.conn.send(250, "2.1.0 sender OK")

    async def _rcpt(self, arg: str) -> None:
        txn = self.txn
        if txn is None:
            await self.conn.send(503, "5.5.1 MAIL first")
            return
        path = parse_mail_path(arg, "TO")
        if path is None or path.params:
            await self.conn.send(501, "5.1.3 bad recipient address syntax")
            return
        if len(txn.recipients) >= self.settings.max_recipients:
            await self.conn.send(452, "4.5.3 too many recipients")
            return
        try:
            route = await self.proxy.router.route_recipient(path.address)
        except Exception as exc:  # a router's failure (directory down) is the sender's retry, not our end
            log.warning("routing a recipient failed: %s", safe(type(exc).__name__))
            await self.conn.send(451, "4.3.0 recipient lookup failed, try again later")
            return
        if route is None:
            await self.conn.send(550, "5.1.1 no such recipient here")
            return
        first = next((r.backend for _, r in txn.recipients), None)
        if self.spool is None and first is not None and route.backend != first:
            await self.conn.send(
                451, "4.3.0 recipient on another platform: send it in a separate transaction"
            )
            return
        answer = await self._ask_backend(txn, route, path.address)
        if answer is None:  # the backend is down
            if self.spool is None:
                await self.conn.send(451, "4.3.0 mail service temporarily unavailable, try again later")
                return
            answer = Reply(250, ("2.1.5 recipient OK, queued",))
        if answer.positive:
            txn.recipients.append((path.address, route))
        await self.conn.send(answer.code, *answer.lines)

    async def _ask_backend(self, txn: _Transaction, route: Route, address: str) -> Reply | None:
        """The backend's answer to this RCPT (or to our MAIL FROM when it refused that); None: unreachable."""
        state = txn.backends.get(route.backend, _NOT_ASKED)
        if state is _NOT_ASKED:
            state = await self._open(txn, route.backend)
            txn.backends[route.backend] = state
        if state is None or isinstance(state, Reply):
            return state
        try:
            answer = await state.command(
                encode(f"RCPT TO:<{address}>"), self.settings.backend_timeout_seconds
            )
        except BackendUnavailable as exc:
            log.info("backend %s dropped during RCPT: %s", safe(route.backend), exc)
            txn.backends[route.backend] = None
            await state.close(quit_first=False)
            return None
        return _relayed(answer)

    async def _open(self, txn: _Transaction, backend_name: str) -> BackendSession | Reply | None:
        backend = self.proxy.backends.get(backend_name)
        endpoint = None if backend is None else backend.endpoints.get(Service.SMTP)
        if endpoint is None:
            log.warning("backend %s has no smtp endpoint", safe(backend_name))
            return None
        try:
            session = await open_session(
                endpoint, self.settings.hostname, self.settings.backend_timeout_seconds
            )
        except BackendUnavailable as exc:
            log.info("backend %s unavailable: %s", safe(backend_name), exc)
            return None
        try:
            answer = await session.command(mail_from(session, txn.sender.address, txn.body, size_param(txn.sender)),
                                           self.settings.backend_timeout_seconds)  # fmt: skip
        except BackendUnavailable as exc:
            log.info("backend %s dropped during MAIL: %s", safe(backend_name), exc)
            await session.close(quit_first=False)
            return None
        if answer.positive:
            return session
        await session.close()
        return _relayed(answer)

    async def _data(self) -> bool:
        txn = self.txn
        if txn is None:
            await self.conn.send(503, "5.5.1 MAIL first")
            return True
        if not txn.recipients:
            await self.conn.send(554, "5.5.1 no valid recipients")
            return True
        names = {route.backend for _, route in txn.recipients}
        live = txn.backends.get(next(iter(names)))
        if len(names) == 1 and isinstance(live, BackendSession):
            return await self._stream(txn, live)
        if self.spool is not None:
            return await self._spool(txn, self.spool)
        await self.conn.send(451, "4.3.0 mail service temporarily unavailable, try again later")
        await self.end_transaction()
        return True

    async def _stream(self, txn: _Transaction, session: BackendSession) -> bool:
        """DATA straight to the one backend; its answer to the final dot is the sender's answer."""
        timeout = self.settings.backend_data_timeout_seconds
        try:
            answer = await session.command(b"DATA", self.settings.backend_timeout_seconds)
        except BackendUnavailable:
            answer = Reply(451, ("4.3.0 mail service temporarily unavailable, try again later",))
        if answer.code != 354:
            await self.conn.send(answer.code if answer.code >= 400 else 451, *_relayed(answer).lines)
            await self.end_transaction()
            return True
        await self.conn.send(354, "end data with <CR><LF>.<CR><LF>")
        sink = BackendSink(session)
        sink.write(self._received_header(None))
        problem = await receive_message(self.conn, sink, self.settings.max_message_bytes)
        if problem is not None or sink.broken:
            sink.abandon()
            txn.backends.clear()  # the session is dropped mid-DATA: a QUIT would be taken as text
            if problem == "gone":
                self.txn = None
                return False
            await self._refuse(problem or "backend")
            return True
        try:
            session.writer.write(b".\r\n")
            final = await session.read_reply(timeout)
        except BackendUnavailable:
            final = Reply(451, ("4.3.0 the backend did not confirm the message, try again later",))
        await self.conn.send(final.code, *_relayed(final).lines)
        await self.end_transaction()
        return True

    async def _spool(self, txn: _Transaction, spool: Spool) -> bool:
        """DATA into the spool; ``250`` only after the message and its directory entry are fsync'd."""
        recipients = [Recipient(address, route.backend) for address, route in txn.recipients]
        params = "" if txn.body is None else f"BODY={txn.body}"
        try:
            draft = spool.begin(txn.sender.address, params, recipients)
        except OSError as exc:
            log.error("spool unusable: %s", safe(exc))
            await self.conn.send(451, "4.3.0 local error in processing, try again later")
            await self.end_transaction()
            return True
        await self.conn.send(354, "end data with <CR><LF>.<CR><LF>")
        sink = SpoolSink(draft)
        sink.write(self._received_header(draft.envelope.id))
        problem = await receive_message(self.conn, sink, self.settings.max_message_bytes)
        if problem is None and sink.broken:
            problem = "disk"
        if problem is not None:
            draft.abort()
            await self.end_transaction()
            if problem == "gone":
                return False
            await self._refuse(problem)
            return True
        try:
            await asyncio.to_thread(draft.commit)
        except OSError as exc:
            log.error("spooling failed: %s", safe(exc))
            await self.conn.send(451, "4.3.0 local error in processing, try again later")
            await self.end_transaction()
            return True
        if self.spooled is not None:
            self.spooled.set()
        await self.conn.send(250, f"2.0.0 queued as {draft.envelope.id}")
        await self.end_transaction()
        return True

    async def _refuse(self, problem: str) -> None:
        answers = {
            "size": (552, f"5.3.4 message too big (at most {self.settings.max_message_bytes} octets)"),
            "line": (500, "5.5.2 message has a line longer than 998 characters"),
            "newline": (554, "5.6.0 bare CR or LF in the message: lines must end with CR LF"),
        }
        code, text = answers.get(problem, (451, "4.3.0 the backend went away, try again later"))
        await self.conn.send(code, text)
        await self.end_transaction()

    def _received_header(self, spool_id: str | None) -> bytes:
        """The proxy's trace line (RFC 5321 4.4): the sender's name and address, which the backend can't see."""
        with_ = "ESMTPS" if self.conn.tls else "ESMTP"
        queued = "" if spool_id is None else f" id {spool_id}"
        address = safe(self.conn.address)
        literal = f"IPv6:{address}" if ":" in address else address  # RFC 5321 4.1.3
        return (
            f"Received: from {self.helo} ([{literal}])\r\n"
            f"\tby {self.settings.hostname} (cutover proxy) with {with_}{queued};\r\n"
            f"\t{formatdate(localtime=False)}\r\n"
        ).encode()

    async def end_transaction(self) -> None:
        """Forget the transaction and QUIT the backends it opened."""
        txn, self.txn = self.txn, None
        if txn is None:
            return
        sessions = [s for s in txn.backends.values() if isinstance(s, BackendSession)]
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


_NOT_ASKED = Reply(0, ())


def _relayed(answer: Reply) -> Reply:
    """A backend's reply as the sender gets it: its code and words, made safe."""
    return Reply(answer.code, tuple(safe(line) for line in answer.lines) or ("",))

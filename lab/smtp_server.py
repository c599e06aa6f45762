"""The target platform's SMTP hub: Twisted's ``ESMTP`` (twisted.mail.smtp) delivering into the
target ``MailStore``.

EHLO advertises ``SIZE <limit>`` (RFC 1870) and ``8BITMIME``; ``MAIL FROM:<...> SIZE=n`` over the
limit is refused with 552 before any data, and so is a message that turns out larger. RCPT TO
accepts the target's accounts only (550 otherwise), and each message lands in the recipient's
INBOX. No STARTTLS and no AUTH: the hub is a lab stand-in for a receive connector, and the
capacity check says what it thinks of a hub without STARTTLS.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from twisted.internet import defer, protocol
from zope.interface import implementer

from lab.mailstore import Account, MailStore
from lab.twisted_mail import smtp

_SIZE_PARAM = re.compile(rb"\bSIZE=(\d+)", re.IGNORECASE)
TOO_BIG = b"5.3.4 Message size exceeds fixed maximum message size"


@implementer(smtp.IMessage)
class Delivery:
    """One message for one recipient, stored at the end of DATA."""

    def __init__(self, account: Account, limit: int) -> None:
        self.account = account
        self.limit = limit
        self.lines: list[bytes] = []
        self.size = 0

    def lineReceived(self, line: bytes) -> None:
        self.size += len(line) + 2
        if self.size <= self.limit:
            self.lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:
        if self.size > self.limit:
            return defer.fail(smtp.SMTPServerError(552, TOO_BIG))
        now = datetime.now(UTC).replace(microsecond=0)
        self.account.inbox.append(b"\r\n".join(self.lines) + b"\r\n", set(), now)
        return defer.succeed(None)

    def connectionLost(self) -> None:
        self.lines.clear()


@implementer(smtp.IMessageDelivery)
class HubRouting:
    def __init__(self, store: MailStore, host: bytes, limit: int) -> None:
        self.store = store
        self.host = host
        self.limit = limit

    def receivedHeader(self, helo: tuple[bytes, bytes], origin: Any, recipients: list[Any]) -> bytes:
        stamp = format_datetime(datetime.now(UTC)).encode()
        return b"Received: from %s ([%s]) by %s (cutover demo lab); %s" % (helo[0], helo[1], self.host, stamp)

    def validateFrom(self, helo: tuple[bytes, bytes], origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        account = self.store.account(str(user.dest))
        if account is None:
            raise smtp.SMTPBadRcpt(user)
        return lambda: Delivery(account, self.limit)


class HubESMTP(smtp.ESMTP):
    def __init__(self, routing: HubRouting) -> None:
        super().__init__()
        self.delivery = routing
        self.host = routing.host
        self.limit = routing.limit

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        extensions: dict[bytes, list[bytes] | None] = super().extensions()
        extensions[b"SIZE"] = [b"%d" % self.limit]
        extensions[b"8BITMIME"] = None
        return extensions

    def do_MAIL(self, rest: bytes) -> None:
        declared = _SIZE_PARAM.search(rest)
        if declared and int(declared.group(1)) > self.limit:
            self.sendCode(552, TOO_BIG)
            return
        super().do_MAIL(rest)


class HubFactory(protocol.ServerFactory):
    def __init__(self, store: MailStore, host: str, limit: int) -> None:
        self.routing = HubRouting(store, host.encode(), limit)

    def buildProtocol(self, addr: object) -> HubESMTP:
        hub = HubESMTP(self.routing)
        hub.factory = self
        return hub

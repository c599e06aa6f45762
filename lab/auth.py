"""Logins to a lab platform (twisted.cred): a user with their own password, or the master user
on behalf of any user, as Dovecot and Cyrus allow.

The master user says who it acts for either as the SASL PLAIN authorization identity
(``authzid \\0 master \\0 password``) or in the login name (``alice@acme.example*admin``, Dovecot's
``auth_master_user_separator``). An account with a ``login_refusal`` refuses every login.
"""

from __future__ import annotations

import hmac

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.mail.imap4 import IllegalClientResponse, PLAINCredentials
from zope.interface import implementer

from lab.mailstore import MailStore

MASTER_SEPARATOR = "*"


class MasterPlainCredentials(PLAINCredentials):
    """SASL PLAIN that keeps the authorization identity (Twisted's own class drops it)."""

    authzid = b""

    def setResponse(self, response: bytes) -> None:
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise IllegalClientResponse("Malformed Response - wrong number of parts")
        self.authzid, self.username, self.password = parts


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@implementer(ICredentialsChecker)
class StoreChecker:
    """Checks a login against a MailStore; the avatar id is the account's address."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, store: MailStore) -> None:
        self.store = store

    def requestAvatarId(self, credentials: IUsernamePassword) -> defer.Deferred[str]:
        try:
            return defer.succeed(self.check(credentials))
        except UnauthorizedLogin as exc:
            return defer.fail(exc)

    def check(self, credentials: IUsernamePassword) -> str:
        name = _text(credentials.username)
        password = _text(credentials.password)
        authzid = _text(getattr(credentials, "authzid", b""))
        user, _, master = name.partition(MASTER_SEPARATOR)
        if authzid and authzid.lower() != name.lower():
            master, user = name, authzid
        if master:
            if not (_same(master, self.store.master_user) and _same(password, self.store.master_password)):
                raise UnauthorizedLogin("master login refused")
            account = self.store.account(user)
        else:
            account = self.store.account(user)
            if account is None or not _same(password, account.password):
                raise UnauthorizedLogin("wrong password")
        if account is None:
            raise UnauthorizedLogin("no such user")
        if account.login_refusal:
            raise UnauthorizedLogin(account.login_refusal)
        return account.user


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

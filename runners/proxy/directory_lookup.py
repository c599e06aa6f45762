"""The router's directory question: the routing attribute of the user whose ``match`` attribute is the
login, on ``[switch.directory]``'s server (the attribute the switch sets is the one routing reads).

Blocking (ldap3 is synchronous and untyped, so only this module of the proxy touches it): the router
asks it from a worker thread, and only when its cache has no answer. One bound connection is kept and
reopened once when it breaks. The bind password is a plan secret, read when binding, never in a message.
"""

from __future__ import annotations

import math
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from runners.errors import ConnectError, ProtocolError
from runners.plan.switch_model import RoutingDirectory
from runners.safe_text import safe
from runners.switch.directory import server_name


class DirectoryLookup:
    def __init__(self, settings: RoutingDirectory, attribute: str, match: str) -> None:
        self.settings = settings
        self.attribute = attribute
        self.match = match
        self.name = server_name(settings)
        self._conn: Any = None
        self._lock = threading.Lock()

    def values_of(self, login: str) -> tuple[str, ...]:
        """The attribute's values (lower case) of the one entry matching ``login``; () when no entry or
        several match. Raises ``ConnectError``/``ProtocolError`` when the directory can't answer."""
        with self._lock:
            try:
                return self._search(login)
            except (ConnectError, ProtocolError, ldap_errors.LDAPException):
                self._drop()
            try:
                return self._search(login)
            except ldap_errors.LDAPException as exc:
                self._drop()
                raise ConnectError(self.name, "search", safe(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _search(self, login: str) -> tuple[str, ...]:
        conn = self._connection()
        query = f"({self.match}={escape_filter_chars(login)})"
        if not conn.search(self.settings.base, query, ldap3.SUBTREE, attributes=[self.attribute]):
            if conn.result.get("result") == 0:  # success, no entry
                return ()
            raise ProtocolError(self.name, f"search {query}", safe(conn.result.get("description")))
        entries = [e for e in conn.response if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            return ()
        raw = entries[0].get("raw_attributes", {})
        for name, values in raw.items():
            if name.lower() == self.attribute.lower():
                return tuple(v.decode("utf-8", "replace").strip().lower() for v in values)
        return ()

    def _connection(self) -> Any:
        if self._conn is not None:
            return self._conn
        s = self.settings
        parts = urlsplit(s.url)
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED if s.tls_verify else ssl.CERT_NONE, ca_certs_file=s.ca_file
        )
        server = ldap3.Server(
            parts.hostname, port=parts.port, use_ssl=parts.scheme == "ldaps", tls=tls, get_info=ldap3.NONE,
            connect_timeout=min(s.timeout, 5.0),
        )  # fmt: skip
        password = s.bind_password.reveal() if s.bind_password is not None else None
        conn = ldap3.Connection(
            server, user=s.bind_dn, password=password, receive_timeout=max(1, math.ceil(min(s.timeout, 5.0))),
            raise_exceptions=False, auto_bind=ldap3.AUTO_BIND_NONE,
        )  # fmt: skip
        try:
            conn.open()
            if s.starttls and not conn.start_tls():
                raise ConnectError(self.name, "StartTLS", safe(conn.result.get("description")))
            if not conn.bind():
                raise ConnectError(self.name, "bind", safe(conn.result.get("description")))
        except ldap_errors.LDAPException as exc:
            conn.unbind()
            raise ConnectError(self.name, "connect", safe(exc)) from None
        except ConnectError:
            conn.unbind()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.unbind()
            except ldap_errors.LDAPException:
                pass
            self._conn = None

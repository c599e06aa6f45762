"""The directory's half of the switch: the routing attribute of each user, set to where their mail
is now served (the target's value; the legacy's for a rollback), then read back.

Per user, found by address (``match``, ``mail`` by default) under ``base``:

* already at the value: not modified (a rerun changes nothing);
* otherwise one modify that *deletes the values read* and adds the new one, so a value someone
  changed in between makes the server refuse (``noSuchAttribute``) rather than be overwritten, the
  same guarantee the DNS update's prerequisites give;
* then the entry is read again: only a read-back value counts as done.

A refusal keeps the server's words per user (``insufficientAccessRights (50): ...``); one user's
refusal doesn't stop the others. An address that matches no entry, or several, is reported and
left alone. The bind password is a plan secret: read when binding, registered with
``runners.safe_text``, never in a message. ldap3 is untyped, so only this module touches it here
(``checks.ldapdir`` does the same for the readiness checks).
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from runners.errors import AuthError, ConnectError, ProtocolError
from runners.plan.switch_model import RoutingDirectory
from runners.safe_text import safe

Side = Literal["target", "legacy"]
Outcome = Literal["changed", "already", "refused", "not-found", "ambiguous", "unconfirmed"]


@dataclass(frozen=True, slots=True)
class UserRouting:
    """What the switch found and did for one user."""

    address: str
    outcome: Outcome
    dn: str | None = None
    before: tuple[str, ...] = ()
    #: The values read back after the modify (or found, when already at the value).
    after: tuple[str, ...] = ()
    #: The server's words when it refused the modify, verbatim (made safe).
    server_text: str | None = None

    @property
    def done(self) -> bool:
        return self.outcome in ("changed", "already")


@dataclass(frozen=True, slots=True)
class RoutingResult:
    server: str
    attribute: str
    value: str
    users: tuple[UserRouting, ...]

    @property
    def confirmed(self) -> bool:
        """Every user reads back at the value."""
        return all(u.done for u in self.users)

    @property
    def not_done(self) -> tuple[UserRouting, ...]:
        return tuple(u for u in self.users if not u.done)

    def as_did(self) -> dict[str, Any]:
        """The result as a step records it (``did``): server, attribute, value and each user's outcome."""
        users = [{"address": u.address, "outcome": u.outcome, "before": list(u.before), "after": list(u.after),
                  "server_text": u.server_text} for u in self.users]  # fmt: skip
        return {"server": self.server, "attribute": self.attribute, "value": self.value, "users": users}

    def problems(self) -> list[str]:
        """One line per user not at the value: ``directory: address: outcome (server's words)``."""
        return [f"directory: {u.address}: {u.outcome}" + (f" ({u.server_text})" if u.server_text else "")
                for u in self.not_done]  # fmt: skip


def route_users(settings: RoutingDirectory, addresses: Sequence[str], side: Side) -> RoutingResult:
    """Set ``settings.attribute`` to the ``side``'s value for each address, and read it back.

    Raises ``ConnectError``/``AuthError`` when the directory can't be reached or the bind is
    refused; a refusal for one user is in that user's result instead.
    """
    value = settings.target_value if side == "target" else settings.legacy_value
    with _Directory(settings) as directory:
        users = tuple(_route(directory, settings, address, value) for address in addresses)
    return RoutingResult(directory.name, settings.attribute, value, users)


def server_name(settings: RoutingDirectory) -> str:
    parts = urlsplit(settings.url)
    port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _route(directory: _Directory, settings: RoutingDirectory, address: str, value: str) -> UserRouting:
    found = directory.find(settings.match, address, settings.attribute)
    if not found:
        return UserRouting(address, "not-found")
    if len(found) > 1:
        return UserRouting(
            address, "ambiguous", server_text=f"{len(found)} entries: " + "; ".join(dn for dn, _ in found)
        )
    ((dn, before),) = found
    if before == (value,):
        return UserRouting(address, "already", dn, before, before)
    refused = directory.replace(dn, settings.attribute, before, value)
    if refused is not None:
        return UserRouting(address, "refused", dn, before, server_text=refused)
    after = directory.read(dn, settings.attribute)
    outcome: Outcome = "changed" if after == (value,) else "unconfirmed"
    return UserRouting(address, outcome, dn, before, after)


class _Directory:
    """One bound connection (sync strategy, no exceptions: each result is read from ``conn.result``)."""

    def __init__(self, settings: RoutingDirectory) -> None:
        self.settings = settings
        self.name = server_name(settings)
        self.conn: Any = None

    def __enter__(self) -> _Directory:
        s = self.settings
        parts = urlsplit(s.url)
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED if s.tls_verify else ssl.CERT_NONE, ca_certs_file=s.ca_file
        )
        server = ldap3.Server(
            parts.hostname, port=parts.port, use_ssl=parts.scheme == "ldaps", tls=tls, get_info=ldap3.NONE,
            connect_timeout=s.timeout,
        )  # fmt: skip
        password = s.bind_password.reveal() if s.bind_password is not None else None
        self.conn = ldap3.Connection(
            # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds: a float breaks it.
            server, user=s.bind_dn, password=password, receive_timeout=max(1, math.ceil(s.timeout)), raise_exceptions=False,
            auto_bind=ldap3.AUTO_BIND_NONE,
        )  # fmt: skip
        try:
            self.conn.open()
            if s.starttls and not self.conn.start_tls():
                raise ConnectError(self.name, "StartTLS", _words(self.conn.result))
            if not self.conn.bind():
                raise AuthError(self.name, f"bind as {s.bind_dn or 'anonymous'}", _words(self.conn.result))
        except ldap_errors.LDAPException as exc:
            self.conn.unbind()
            raise ConnectError(self.name, "connect", safe(exc)) from None
        except ProtocolError:
            self.conn.unbind()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.unbind()

    def find(self, match: str, address: str, attribute: str) -> list[tuple[str, tuple[str, ...]]]:
        """Entries whose ``match`` is ``address``, with their ``attribute`` values."""
        query = f"({match}={escape_filter_chars(address)})"
        if not self.conn.search(self.settings.base, query, ldap3.SUBTREE, attributes=[attribute]):
            if self.conn.result.get("result") == 0:  # success, no entry (ldap3 says False for none)
                return []
            raise ProtocolError(self.name, f"search {query}", _words(self.conn.result))
        return [
            (e["dn"], _values(e, attribute)) for e in self.conn.response if e.get("type") == "searchResEntry"
        ]

    def read(self, dn: str, attribute: str) -> tuple[str, ...]:
        if not self.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attribute]):
            raise ProtocolError(self.name, f"read {dn}", _words(self.conn.result))
        entries = [e for e in self.conn.response if e.get("type") == "searchResEntry"]
        return _values(entries[0], attribute) if entries else ()

    def replace(self, dn: str, attribute: str, before: tuple[str, ...], value: str) -> str | None:
        """Delete exactly ``before`` and add ``value`` in one modify; the server's words if refused."""
        changes: list[tuple[str, list[str]]] = []
        if before:
            changes.append((ldap3.MODIFY_DELETE, list(before)))
        changes.append((ldap3.MODIFY_ADD, [value]))
        if self.conn.modify(dn, {attribute: changes}):
            return None
        return _words(self.conn.result)


def _values(entry: dict[str, Any], attribute: str) -> tuple[str, ...]:
    """The entry's values of ``attribute`` as text, sorted (names are case-insensitive)."""
    raw = entry.get("raw_attributes", {})
    for name, values in raw.items():
        if name.lower() == attribute.lower():
            return tuple(sorted(v.decode("utf-8", "replace") for v in values))
    return ()


def _words(result: dict[str, Any]) -> str:
    """The server's own result: ``insufficientAccessRights (50): no write access to parent``."""
    text = f"{result.get('description')} ({result.get('result')})"
    message = result.get("message")
    return safe(f"{text}: {message}" if message else text)

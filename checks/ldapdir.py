"""A typed, read-only facade over ldap3: connect (LDAP, StartTLS, LDAPS), bind, paged search.

ldap3 is untyped, so nothing else in the project touches it. One ``Connection`` per export, used
by the one thread that runs the export (the sync strategy is not thread-safe and needs no copy of
every response, unlike SAFE_SYNC). Every failure becomes a ``runners.errors.ProtocolError`` whose
``server_text`` is the server's own result name and diagnostic message (``invalidCredentials (49):
...``) or the socket's error, so a check that can't run says exactly why. The bind password is
read when binding and never put into any message.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from runners.errors import AuthError, CommandError, ConnectError, ConnectionLost, ProtocolError, TlsError
from runners.plan.readiness_parts import DirectorySettings
from runners.safe_text import safe

#: Entries per page: below every server's per-page cap (AD 1000, OpenLDAP's 500 size limit).
PAGE_SIZE = 200
_PAGED_RESULTS = "1.2.840.113556.1.4.319"  # RFC 2696
_TUPLE_REPR = re.compile(r"\(\s*(['\"])(.*)\1\s*,?\s*\)", re.DOTALL)
_ATTRIBUTE_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$")


@dataclass(frozen=True, slots=True)
class Entry:
    """One search result entry: its DN and the values asked for, names spelled as the server does."""

    dn: str
    attributes: dict[str, tuple[str, ...]]

    def values(self, name: str) -> tuple[str, ...]:
        """The values of ``name``; attribute names are case-insensitive (RFC 4512)."""
        wanted = name.lower()
        return next((v for n, v in self.attributes.items() if n.lower() == wanted), ())


# --- filters ------------------------------------------------------------------------------


def attribute_name(name: str) -> str:
    """An attribute name or OID, checked: names can't be escaped, so anything else is refused."""
    if not _ATTRIBUTE_NAME.match(name):
        raise ValueError(f"not an LDAP attribute name: {name!r}")
    return name


def present(name: str) -> str:
    return f"({attribute_name(name)}=*)"


def equals(name: str, value: str) -> str:
    """``(name=value)`` with the value escaped (RFC 4515): ``*``, ``(``, ``)``, ``\\`` and NUL."""
    return f"({attribute_name(name)}={escape_filter_chars(value)})"


def any_of(parts: Iterable[str]) -> str:
    items = [p for p in parts if p]
    return items[0] if len(items) == 1 else "(|" + "".join(items) + ")"


def all_of(parts: Iterable[str]) -> str:
    items = [p if p.startswith("(") else f"({p})" for p in parts if p]
    return items[0] if len(items) == 1 else "(&" + "".join(items) + ")"


# --- searching ----------------------------------------------------------------------------


def server_name(settings: DirectorySettings) -> str:
    """``ldap://host:port`` as shown in errors and used as the per-server slot name."""
    parts = urlsplit(settings.url)
    port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def search(settings: DirectorySettings, search_filter: str, attributes: Sequence[str]) -> list[Entry]:
    """Every entry under ``settings.base`` matching the filter, page by page.

    Paging is critical (``paged_criticality``): a server that can't page, or stops early
    (``sizeLimitExceeded``), makes this raise instead of returning part of the directory.
    """
    wanted = [attribute_name(a) for a in dict.fromkeys(attributes)]
    with _Session(settings) as session:
        return session.paged_search(search_filter, wanted)


class _Session:
    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self.name = server_name(settings)
        self.conn: Any = None

    def __enter__(self) -> _Session:
        s = self.settings
        parts = urlsplit(s.url)
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED if s.tls_verify else ssl.CERT_NONE,
            ca_certs_file=s.ca_file,
        )
        server = ldap3.Server(
            parts.hostname,
            port=parts.port,
            use_ssl=parts.scheme == "ldaps",
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=s.timeout,
        )
        self.conn = ldap3.Connection(
            server,
            user=s.bind_dn,
            password=None,  # handed over in bind() only, so no ldap3 object holds it for long
            authentication=ldap3.SIMPLE if s.bind_dn else ldap3.ANONYMOUS,
            client_strategy=ldap3.SYNC,
            auto_bind=ldap3.AUTO_BIND_NONE,
            read_only=True,
            # Whole seconds: ldap3 packs it into SO_RCVTIMEO as an integer.
            receive_timeout=max(1, math.ceil(s.timeout)),
            auto_referrals=False,  # never follow a referral to some other host
            raise_exceptions=False,
            return_empty_attributes=False,
        )
        try:
            self._call("connect", self.conn.open)
            if s.starttls and parts.scheme == "ldap":
                if not self._call("StartTLS", self.conn.start_tls, read_server_info=False):
                    raise TlsError(self.name, "StartTLS", self._words(self.conn.result or {}))
            self._bind()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _bind(self) -> None:
        s = self.settings
        if s.bind_dn is None:
            return  # anonymous: the first search shows whether that is allowed
        password = s.bind_password.reveal() if s.bind_password is not None else ""
        self.conn.password = password
        try:
            ok = self._call(f"bind as {s.bind_dn}", self.conn.bind, read_server_info=False)
        finally:
            self.conn.password = None
        if not ok:
            result = self.conn.result or {}
            raise AuthError(
                self.name, f"bind as {s.bind_dn}", self._words(result), code=result.get("description")
            )

    def paged_search(self, search_filter: str, attributes: list[str]) -> list[Entry]:
        s = self.settings
        operation = f"search {s.base} {search_filter}"
        entries: list[Entry] = []
        cookie: bytes | None = None
        while True:
            self._call(
                operation,
                self.conn.search,
                s.base,
                search_filter,
                search_scope=ldap3.SUBTREE,
                # An alias entry would list its target a second time: a false duplicate.
                dereference_aliases=ldap3.DEREF_NEVER,
                attributes=attributes or [ldap3.NO_ATTRIBUTES],
                time_limit=max(1, int(s.timeout)),
                paged_size=PAGE_SIZE,
                paged_criticality=True,
                paged_cookie=cookie,
            )
            result = self.conn.result or {}
            if result.get("result") != 0:
                raise CommandError(
                    self.name, operation, self._words(result), code=result.get("description"), status="error"
                )
            entries.extend(
                _entry(item) for item in self.conn.response or [] if item.get("type") == "searchResEntry"
            )
            cookie = result.get("controls", {}).get(_PAGED_RESULTS, {}).get("value", {}).get("cookie")
            if not cookie:
                return entries

    def _call(self, operation: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ldap_errors.LDAPStartTLSError, ldap_errors.LDAPCertificateError) as exc:
            raise TlsError(self.name, operation, self._scrub(exc)) from None
        except ldap_errors.LDAPSocketOpenError as exc:
            text = self._scrub(exc)
            kind = TlsError if "ssl" in text.lower() or "certificate" in text.lower() else ConnectError
            raise kind(self.name, operation, text) from None
        except (ldap_errors.LDAPResponseTimeoutError, ldap_errors.LDAPSocketReceiveError) as exc:
            timeout = f"no answer within {self.settings.timeout:g} s"
            raise ConnectionLost(self.name, operation, f"{timeout} ({self._scrub(exc)})") from None
        except ldap_errors.LDAPCommunicationError as exc:
            raise ConnectionLost(self.name, operation, self._scrub(exc)) from None
        except ldap_errors.LDAPException as exc:
            raise ProtocolError(self.name, operation, self._scrub(exc)) from None

    def _words(self, result: dict[str, Any]) -> str:
        """The server's result as it said it: ``invalidCredentials (49): <diagnostic message>``."""
        text = f"{result.get('description') or 'no result'} ({result.get('result')})"
        message = str(result.get("message") or "").strip()
        return self._scrub(f"{text}: {message}" if message else text)

    def _scrub(self, what: object) -> str:
        # Belt and braces: no library message may ever carry the bind password (registered with
        # the one scrubber when it was revealed for the bind).
        return safe(_unwrap(str(what)))

    def _close(self) -> None:
        if self.conn is not None:
            # Closing a broken connection fails too: there is nothing left to report then.
            with contextlib.suppress(Exception):
                self.conn.unbind()
            self.conn = None


def _unwrap(text: str) -> str:
    """ldap3 nests messages in tuple reprs (``("('socket ssl wrapping error: ...',)",)``): peel them."""
    while match := _TUPLE_REPR.fullmatch(text):
        text = match.group(2)
    return text


def _entry(item: dict[str, Any]) -> Entry:
    raw = item.get("raw_attributes") or {}
    return Entry(
        dn=str(item.get("dn", "")),
        attributes={str(name): tuple(_text(v) for v in values) for name, values in raw.items()},
    )


def _text(value: bytes | str) -> str:
    """UTF-8 text as is; binary values (GUIDs, certificates) as hex: comparable and printable."""
    if isinstance(value, str):
        return value
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + value.hex()
    return text if text.isprintable() else "0x" + value.hex()

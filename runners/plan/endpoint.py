"""Build one ``Endpoint`` from the ``[source]`` or ``[target]`` table of a plan."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import string
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast
from urllib.parse import urlsplit

from runners.adapters import source_types, target_types
from runners.plan.endpoint_keys import EWS_KEYS, GRAPH_KEYS
from runners.plan.model import AuthMode, Endpoint, EndpointType, Secret, Security
from runners.plan.paths import make_secret, resolve_path
from runners.plan.tables import Table

if TYPE_CHECKING:
    from runners.plan.ews_options import EwsOptions

Role = Literal["source", "target"]

TYPES: tuple[EndpointType, ...] = ("imap", "pop3", "maildir", "ews", "graph")
SOURCE_TYPES = ("imap", "pop3", "maildir")
TARGET_TYPES = ("imap", "maildir", "ews", "graph")
SECURITY: tuple[Security, ...] = ("plain", "starttls", "tls")
AUTH: tuple[AuthMode, ...] = ("master", "password")
MAILDIR_LAYOUTS = ("dovecot", "courier")

COMMON_KEYS = ("type", "max_connections", "max_message_bytes")
NETWORK_KEYS = (
    "host",
    "port",
    "security",
    "auth",
    "master_user",
    "master_password",
    "login_template",
    "password",
    "tls_verify",
    "ca_file",
    "timeout",
)
MAILDIR_KEYS = ("path", "maildir_layout")
MASTER_KEYS = ("master_user", "master_password", "login_template")
ENDPOINT_KEYS = COMMON_KEYS + NETWORK_KEYS + MAILDIR_KEYS

#: Graph has one public endpoint; EWS, IMAP and POP3 hosts must be named.
_DEFAULT_HOSTS = {"graph": "graph.microsoft.com"}
_LOGIN_FIELDS = frozenset({"user", "master"})


def default_port(kind: EndpointType, security: Security) -> int | None:
    """The usual port: implicit TLS (993/995/443) or the clear/STARTTLS one (143/110/80)."""
    tls = security == "tls"
    ports = {"imap": (143, 993), "pop3": (110, 995), "ews": (80, 443), "graph": (80, 443)}
    pair = ports.get(kind)
    return None if pair is None else pair[1 if tls else 0]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8 or ::1, the only hosts a password may be sent to in clear: judged by address.

    A name counts only when every address it resolves to is loopback: the spelling proves nothing
    (``localhost.`` may be asked of DNS, which may answer anything). A name that doesn't resolve is
    not loopback.
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        answers = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addresses = {str(answer[4][0]).partition("%")[0] for answer in answers}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def build_endpoint(
    table: Table, role: Role, base_dir: Path, elsewhere: Mapping[str, str] | None = None
) -> Endpoint:
    table.check_keys(
        ENDPOINT_KEYS + EWS_KEYS + (GRAPH_KEYS if table.data.get("type") == "graph" else ()), elsewhere
    )
    kind = cast(EndpointType, table.choice("type", TYPES))
    for key in EWS_KEYS if kind != "ews" else ():
        if key in table:
            raise table.error(key, f'"{key}" only applies to type = "ews"')
    allowed = SOURCE_TYPES if role == "source" else TARGET_TYPES
    if kind not in allowed:
        why = "POP3 can't store messages" if kind == "pop3" else f"it can only be a [{_other(role)}]"
        raise table.error("type", f'type "{kind}" can\'t be the [{role}]: {why}')
    built = source_types() if role == "source" else target_types()
    if kind not in built:
        raise table.error(
            "type",
            f'type "{kind}" can\'t be the [{role}] yet: this version has no {kind} adapter '
            f"(built: {', '.join(built)})",
        )

    max_connections = table.integer("max_connections", 10, low=1)
    max_message_bytes = table.optional_integer("max_message_bytes", low=1)

    if kind == "maildir":
        for key in NETWORK_KEYS:
            if key in table:
                raise table.error(key, f'"{key}" does not apply to type = "maildir"')
        return _maildir(table, kind, base_dir, max_connections, max_message_bytes)

    for key in MAILDIR_KEYS:
        if key in table:
            raise table.error(key, f'"{key}" only applies to type = "maildir"')
    endpoint = _network(table, kind, base_dir, max_connections, max_message_bytes)
    if kind == "graph":
        from runners.plan.graph_options import parse_graph_options  # only a Graph target's plan needs it

        graph = parse_graph_options(table, lambda key: _secret(table, key, base_dir))
        if "host" in table and "graph_url" not in table:
            graph = dataclasses.replace(graph, graph_url=f"https://{_url_host(endpoint)}:{endpoint.port}")
        host, port = _graph_host(table, graph.graph_url)
        return dataclasses.replace(endpoint, graph=graph, host=host, port=port)
    return endpoint


def _graph_host(table: Table, graph_url: str) -> tuple[str, int]:
    """Graph is reached at ``graph_url``; a host (and port) without it moves Graph there."""
    parts = urlsplit(graph_url)
    if "host" in table and "graph_url" in table and table.string("host") != parts.hostname:
        raise table.error("host", f'differs from graph_url "{graph_url}": give graph_url only')
    return parts.hostname or "", parts.port or 443


def _url_host(endpoint: Endpoint) -> str:
    host = endpoint.host or ""
    return f"[{host}]" if ":" in host else host


def _other(role: Role) -> Role:
    return "target" if role == "source" else "source"


def _maildir(
    table: Table, kind: EndpointType, base_dir: Path, max_connections: int, max_message_bytes: int | None
) -> Endpoint:
    raw_path = table.required_string("path")
    if "{user}" not in raw_path:
        raise table.error("path", 'must contain {user}, e.g. "/var/mail/{user}/Maildir"')
    layout = cast(Literal["dovecot", "courier"], table.choice("maildir_layout", MAILDIR_LAYOUTS, "dovecot"))
    return Endpoint(
        type=kind,
        path=str(resolve_path(base_dir, raw_path)),
        maildir_layout=layout,
        max_connections=max_connections,
        max_message_bytes=max_message_bytes,
    )


def _network(
    table: Table, kind: EndpointType, base_dir: Path, max_connections: int, max_message_bytes: int | None
) -> Endpoint:
    host = _host(table, kind)
    security = cast(Security, table.choice("security", SECURITY, "tls"))
    if security == "starttls" and kind in ("ews", "graph"):
        raise table.error("security", f'{kind} speaks HTTPS: use security = "tls"')
    if security == "plain" and not is_loopback(host):
        raise table.error("security", "plain text would send passwords in clear; use starttls or tls")
    port = table.optional_integer("port", low=1, high=65535) or default_port(kind, security)

    # EWS reads its own auth (basic | ntlm | oauth): runners.plan.ews_options.
    auth = cast(AuthMode, table.choice("auth", AUTH, "password") if kind != "ews" else "password")
    master_user: str | None = None
    master_password: Secret | None = None
    login_template: str | None = None
    password: Secret | None = None
    if auth == "master":
        if "password" in table:
            raise table.error("password", 'is only used with auth = "password"')
        master_user = table.required_string("master_user")
        master_password = _secret(table, "master_password", base_dir, required=True)
        login_template = _login_template(table)
    else:
        for key in MASTER_KEYS:
            if key in table:
                raise table.error(key, 'is only used with auth = "master"')
        password = _secret(table, "password", base_dir)

    ca_file = table.string("ca_file")
    return Endpoint(
        type=kind,
        host=host,
        port=port,
        security=security,
        auth=auth,
        master_user=master_user,
        master_password=master_password,
        login_template=login_template,
        password=password,
        tls_verify=table.boolean("tls_verify", True),
        ca_file=None if ca_file is None else str(resolve_path(base_dir, ca_file)),
        timeout=table.positive_number("timeout", 60.0),
        max_connections=max_connections,
        max_message_bytes=max_message_bytes,
        ews=_ews_options(table, host) if kind == "ews" else None,
    )


def _ews_options(table: Table, host: str) -> EwsOptions:
    from runners.plan.ews_options import parse_ews_options  # only an EWS target's plan needs it

    return parse_ews_options(table, host)


def _host(table: Table, kind: EndpointType) -> str:
    host = table.string("host") or _DEFAULT_HOSTS.get(kind)
    if host is None:
        raise table.missing("host")
    if "://" in host or "/" in host:
        raise table.error("host", "must be a host name or address, not a URL")
    if any(c.isspace() for c in host):
        raise table.error("host", "must not contain spaces")
    # "[::1]" is how people write IPv6 next to a port; the connectors want the bare address.
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _secret(table: Table, key: str, base_dir: Path, *, required: bool = False) -> Secret | None:
    ref = table.secret_ref(key, required=required)
    if ref is None:
        return None
    try:
        return make_secret(ref, base_dir)
    except ValueError as exc:
        raise table.error(key, str(exc)) from None


def _login_template(table: Table) -> str | None:
    template = table.string("login_template")
    if template is None:
        return None
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        raise table.error("login_template", "has an unmatched { or }") from None
    names = set()
    for _text, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in _LOGIN_FIELDS or spec or conversion:
            message = f"{{{name}}} is not allowed; use only {{user}} and {{master}}"
            raise table.error("login_template", message)
        names.add(name)
    if names != _LOGIN_FIELDS:
        raise table.error("login_template", 'must contain both {user} and {master}, e.g. "{user}*{master}"')
    return template

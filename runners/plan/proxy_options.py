"""The plan's ``[proxy]`` section: where the routing proxy listens, its backends, routing and limits.

``[proxy]`` names the listen address(es), one port per service (a service without a port does not
listen), the client certificates (``[[proxy.certificates]]``, several names for SNI), the grace period
after a switch and how long a routing decision is cached. ``[proxy.backends.NAME]`` names each
platform: per service ``host:port`` and TLS mode, a login suffix and character substitutions;
``legacy`` and ``target`` start from the plan's ``[source]`` and ``[target]`` where those are IMAP or
POP3. ``[proxy.routing]`` the directory attribute and its values, static overrides and the default
backend; ``[proxy.limits]`` the limits before login. ``[proxy.smtp]`` and ``[proxy.capture]`` belong
to the SMTP listeners and the credential capture, which read them themselves.

This layer sits below ``runners.proxy``: the settings are plain data (services and TLS modes as the
strings the plan spells); ``runners.proxy.settings`` turns them into the proxy's contracts.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from runners.plan.endpoint import is_loopback
from runners.plan.model import Endpoint
from runners.plan.paths import resolve_path
from runners.plan.proxy_model import (
    BackendEndpointOption,
    BackendOption,
    CertificateOption,
    LimitsOption,
    ListenOption,
    ProxyOptions,
    RoutingOption,
)
from runners.plan.proxy_smtp_options import load_proxy_smtp
from runners.plan.switch_model import SwitchSettings
from runners.plan.tables import Table, type_name

PROXY_KEYS = ("listen", "imap_port", "imaps_port", "pop3_port", "pop3s_port", "submission_port",
              "submissions_port", "smtp_port", "certificates", "grace_seconds", "cache_seconds",
              "backends", "routing", "limits", "smtp", "capture", "plaintext_logins", "workers")  # fmt: skip
#: Per service: its key prefix in a backend table, and whether the plan's [source]/[target] type gives it.
BACKEND_SERVICES = ("imap", "pop3", "submission", "smtp")
BACKEND_KEYS = (*BACKEND_SERVICES, *(f"{s}_tls" for s in BACKEND_SERVICES), "tls_verify", "ca_file",
                "login_suffix", "substitutions")  # fmt: skip
ROUTING_KEYS = ("default", "static", "directory", "attribute", "match", "values")
LIMITS_KEYS = ("max_line_bytes", "max_literal_bytes", "login_timeout_seconds", "max_unauthenticated_per_address",
               "auth_failure_delay_seconds", "auth_failure_max_delay_seconds", "lockout_failures",
               "lockout_seconds", "backend_connect_seconds", "backend_login_seconds")  # fmt: skip
TLS_MODES = ("implicit", "starttls", "none")

#: (port key, service, TLS mode of the listener).
_PORTS = (
    ("imap_port", "imap", "starttls"),
    ("imaps_port", "imap", "implicit"),
    ("pop3_port", "pop3", "starttls"),
    ("pop3s_port", "pop3", "implicit"),
    ("submission_port", "submission", "starttls"),
    ("submissions_port", "submission", "implicit"),
    ("smtp_port", "smtp", "starttls"),
)
_SECURITY_TLS = {"plain": "none", "starttls": "starttls", "tls": "implicit"}


def load_proxy(
    root: Table, base_dir: Path, source: Endpoint, target: Endpoint, switch: SwitchSettings | None
) -> ProxyOptions | None:
    """``[proxy]`` (None when absent). Raises ``PlanError`` naming file, line and key."""
    table = root.table("proxy")
    if table is None:
        return None
    table.check_keys(PROXY_KEYS)
    certificates = _certificates(table, base_dir)
    listeners = _listeners(table, bool(certificates))
    backends = _backends(table, base_dir, source, target)
    grace = table.positive_number("grace_seconds", 0.0) if "grace_seconds" in table else None
    smtp = load_proxy_smtp(table, base_dir)
    if smtp.bounce_via is not None:
        _bounce_backend(table, smtp.bounce_via, backends)
    return ProxyOptions(
        listeners=listeners,
        backends=backends,
        routing=_routing(table.table("routing"), table, backends, switch),
        limits=_limits(table.table("limits")),
        certificates=certificates,
        grace_seconds=grace,
        cache_seconds=table.positive_number("cache_seconds", 30.0),
        plaintext_logins=table.choice("plaintext_logins", ("loopback", "never", "always"), "loopback")
        or "loopback",
        smtp=smtp,
        workers=table.integer("workers", 1, low=0, high=256),
    )


def _listeners(table: Table, has_certificate: bool) -> tuple[ListenOption, ...]:
    hosts = _listen_hosts(table)
    out: list[ListenOption] = []
    for key, service, tls in _PORTS:
        port = table.optional_integer(key, low=1, high=65535)
        if port is None:
            continue
        if tls == "implicit" and not has_certificate:
            raise table.error(key, "implicit TLS needs a certificate: add [[proxy.certificates]]")
        out.extend(ListenOption(service, host, port, tls) for host in hosts)
    if not out:
        raise table.error(None, "[proxy] names no port to listen on (imap_port, imaps_port, pop3_port, ...)")
    return tuple(out)


def _listen_hosts(table: Table) -> tuple[str, ...]:
    value = table.data.get("listen")
    if value is None:
        return ("127.0.0.1",)
    hosts = (table.string("listen"),) if isinstance(value, str) else table.string_list("listen")
    for host in hosts:
        try:
            ipaddress.ip_address(host or "")
        except ValueError:
            raise table.error("listen", f'"{host}" is not an IP address (0.0.0.0, ::, 127.0.0.1)') from None
    return tuple(h for h in hosts if h)


def _certificates(table: Table, base_dir: Path) -> tuple[CertificateOption, ...]:
    items = table.array("certificates") or []
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise table.error("certificates", f"item {index + 1} must be a table, got {type_name(item)}")
        entry = Table(table.doc, (*table.key, "certificates", index), item)
        entry.check_keys(("cert", "key", "names"))
        cert = resolve_path(base_dir, entry.required_string("cert"))
        key = resolve_path(base_dir, entry.required_string("key"))
        for name, path in (("cert", cert), ("key", key)):
            if not path.is_file():
                raise entry.error(name, f"{path} is not a file")
        names = tuple(n.lower() for n in entry.string_list("names"))
        out.append(CertificateOption(str(cert), str(key), names))
    return tuple(out)


def _backends(table: Table, base_dir: Path, source: Endpoint, target: Endpoint) -> dict[str, BackendOption]:
    sub = table.table("backends")
    given = {} if sub is None else dict(sub.data)
    out: dict[str, BackendOption] = {}
    for name in dict.fromkeys(("legacy", "target", *given)):
        start = _endpoint_default(source if name == "legacy" else target if name == "target" else None)
        backend_table = sub.table(name) if sub is not None and name in given else None
        out[name] = _backend(name, backend_table, base_dir, start)
    return out


def _endpoint_default(endpoint: Endpoint | None) -> dict[str, BackendEndpointOption]:
    """``legacy``/``target`` speak IMAP or POP3 where ``[source]``/``[target]`` do."""
    if (
        endpoint is None
        or endpoint.type not in ("imap", "pop3")
        or endpoint.host is None
        or endpoint.port is None
    ):
        return {}
    option = BackendEndpointOption(endpoint.host, endpoint.port, _SECURITY_TLS[endpoint.security],
                                   endpoint.tls_verify, endpoint.ca_file)  # fmt: skip
    return {endpoint.type: option}


def _backend(
    name: str, table: Table | None, base_dir: Path, endpoints: dict[str, BackendEndpointOption]
) -> BackendOption:
    if table is None:
        return BackendOption(name, endpoints)
    table.check_keys(BACKEND_KEYS)
    ca_file = table.string("ca_file")
    ca = None if ca_file is None else str(resolve_path(base_dir, ca_file))
    verify = table.boolean("tls_verify", True)
    endpoints = dict(endpoints)
    for service in BACKEND_SERVICES:
        text = table.string(service)
        if text is None:
            if f"{service}_tls" in table:
                raise table.error(f"{service}_tls", f'is only used with "{service}" (host:port)')
            continue
        host, port = _host_port(table, service, text)
        tls = table.choice(f"{service}_tls", TLS_MODES, "implicit" if port in (993, 995, 465) else "starttls")
        assert tls is not None
        if tls == "none" and not is_loopback(host):
            raise table.error(
                f"{service}_tls", "plain text would send passwords in clear; use starttls or implicit"
            )
        endpoints[service] = BackendEndpointOption(host, port, tls, verify, ca)
    return BackendOption(
        name,
        endpoints,
        login_suffix=table.string("login_suffix") or "",
        substitutions=_substitutions(table),
    )


def _host_port(table: Table, key: str, text: str) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or not (port.isdigit() and 0 < int(port) < 65536):
        raise table.error(key, f'"{text}" is not host:port')
    return host, int(port)


def _substitutions(table: Table) -> tuple[tuple[str, str], ...]:
    """``substitutions = { "%" = "@", "." = "_" }``, applied in the order written."""
    sub = table.table("substitutions")
    if sub is None:
        return ()
    out = []
    for old, new in sub.data.items():
        if not old:
            raise sub.error(old, "the text to replace must not be empty")
        if not isinstance(new, str):
            raise sub.error(old, f"expected a string, got {type_name(new)}")
        out.append((old, new))
    return tuple(out)


def _routing(
    table: Table | None, proxy: Table, backends: dict[str, BackendOption], switch: SwitchSettings | None
) -> RoutingOption:
    directory = switch.directory if switch is not None else None
    if table is None:
        table = Table(proxy.doc, (*proxy.key, "routing"), {})
    table.check_keys(ROUTING_KEYS)
    default = table.string("default") or "legacy"
    _known(table, "default", default, backends)
    static = {}
    for login, backend in table.string_map("static").items():
        _known(table, "static", backend, backends)
        static[login.strip().lower()] = backend
    use_directory = table.boolean("directory", directory is not None)
    if use_directory and directory is None:
        raise table.error("directory", "the directory lookup uses [switch.directory]'s server: add it")
    if not use_directory or directory is None:
        return RoutingOption(default=default, static=static)
    values = {directory.legacy_value.lower(): "legacy", directory.target_value.lower(): "target"}
    for value, backend in table.string_map("values").items():
        _known(table, "values", backend, backends)
        values[value.lower()] = backend
    return RoutingOption(
        default=default,
        static=static,
        directory=directory,
        attribute=table.string("attribute") or directory.attribute,
        match=table.string("match") or directory.match,
        values=values,
    )


def _bounce_backend(proxy: Table, name: str, backends: dict[str, BackendOption]) -> None:
    smtp = proxy.table("smtp")
    assert smtp is not None  # bounce_via was read from it
    _known(smtp, "bounce_via", name, backends)
    if "smtp" not in backends[name].endpoints:
        raise smtp.error("bounce_via", f'backend "{name}" has no "smtp" endpoint to send notices through')


def _known(table: Table, key: str, backend: str, backends: dict[str, BackendOption]) -> None:
    if backend not in backends:
        raise table.error(key, f'"{backend}" is not a backend ({", ".join(backends)})')


def _limits(table: Table | None) -> LimitsOption:
    if table is None:
        return LimitsOption()
    table.check_keys(LIMITS_KEYS)
    d = LimitsOption()
    return LimitsOption(
        max_line_bytes=table.integer("max_line_bytes", d.max_line_bytes, low=512, high=1 << 20),
        max_literal_bytes=table.integer("max_literal_bytes", d.max_literal_bytes, low=64, high=1 << 20),
        login_timeout_seconds=table.positive_number("login_timeout_seconds", d.login_timeout_seconds),
        max_unauthenticated_per_address=table.integer(
            "max_unauthenticated_per_address", d.max_unauthenticated_per_address, low=1
        ),
        auth_failure_delay_seconds=_non_negative(
            table, "auth_failure_delay_seconds", d.auth_failure_delay_seconds
        ),
        auth_failure_max_delay_seconds=_non_negative(
            table, "auth_failure_max_delay_seconds", d.auth_failure_max_delay_seconds
        ),
        lockout_failures=table.integer("lockout_failures", d.lockout_failures, low=1),
        lockout_seconds=table.positive_number("lockout_seconds", d.lockout_seconds),
        backend_connect_seconds=table.positive_number("backend_connect_seconds", d.backend_connect_seconds),
        backend_login_seconds=table.positive_number("backend_login_seconds", d.backend_login_seconds),
    )


def _non_negative(table: Table, key: str, default: float) -> float:
    if key not in table:
        return default
    value = table.data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise table.error(key, f"must be a number, 0 or more, got {value!r}")
    return float(value)

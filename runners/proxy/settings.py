"""The plan's ``[proxy]`` options (plain data, ``runners.plan.proxy_model``) as the proxy's contracts."""

from __future__ import annotations

from runners.plan.proxy_model import BackendOption, ListenOption, ProxyOptions
from runners.proxy.contracts import BackendEndpoint, Listener, ProxyBackend, Service, TlsMode


def listeners(options: ProxyOptions) -> tuple[Listener, ...]:
    return tuple(_listener(option) for option in options.listeners)


def backends(options: ProxyOptions) -> dict[str, ProxyBackend]:
    return {name: _backend(option) for name, option in options.backends.items()}


def _listener(option: ListenOption) -> Listener:
    return Listener(Service(option.service), option.host, option.port, TlsMode(option.tls))


def _backend(option: BackendOption) -> ProxyBackend:
    endpoints = {
        Service(service): BackendEndpoint(e.host, e.port, TlsMode(e.tls), e.tls_verify, e.ca_file)
        for service, e in option.endpoints.items()
    }
    return ProxyBackend(option.name, endpoints, option.login_suffix, option.substitutions)

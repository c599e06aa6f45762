"""Whether an address the proxy meets is a loopback one: a client's (the plan may refuse plaintext
logins from anywhere else) or a backend's (plain connections are allowed only to loopback)."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``); kept, as each session asks twice."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a UNIX socket, a name: not loopback
        return False

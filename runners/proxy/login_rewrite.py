"""The login a backend is given: the plan's character substitutions for that backend, in order, then
its login suffix when the login has no domain (``jsmith`` -> ``jsmith@tenant.example``).

Substitutions come first so that ``jsmith%tenant.example`` with ``%`` -> ``@`` already has its domain
and gets no suffix. Pure; never raises.
"""

from __future__ import annotations

from runners.proxy.contracts import ProxyBackend


def rewrite_login(login: str, backend: ProxyBackend) -> str:
    """``login`` as ``backend`` wants it spelled."""
    return rewrite(login, backend.substitutions, backend.login_suffix)


def rewrite(login: str, substitutions: tuple[tuple[str, str], ...], suffix: str) -> str:
    for old, new in substitutions:
        if old:
            login = login.replace(old, new)
    if suffix and "@" not in login:
        login += suffix if suffix.startswith("@") else f"@{suffix}"
    return login

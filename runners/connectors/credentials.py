"""The per-user password a plan gives for one side of one mailbox."""

from __future__ import annotations

from runners.errors import AuthError
from runners.plan.model import Endpoint, Secret


def user_password(endpoint: Endpoint, user: str, override: Secret | None) -> str | None:
    """The per-user password for ``auth = "password"``: CSV column first, then the endpoint's reference."""
    if endpoint.auth != "password":
        return None
    secret = override or (
        Secret(endpoint.password.ref.replace("{user}", user)) if endpoint.password else None
    )
    if secret is None:
        raise AuthError(endpoint.address, f"LOGIN {user}", "no password is configured for this user")
    return secret.reveal()

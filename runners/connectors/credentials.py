"""The per-user password a plan gives for one side of one mailbox."""

from __future__ import annotations

from runners.errors import AuthError
from runners.plan.model import Endpoint, Secret
from runners.plan.proxy_capture_options import CapturedSecret


def user_password(endpoint: Endpoint, user: str, override: Secret | None) -> str | None:
    """The per-user password for ``auth = "password"``: CSV column first, then the endpoint's reference.

    ``captured:`` (a ``CapturedSecret``) is the password the routing proxy captured for ``user``, read
    from the store; none captured raises ``NotCaptured``, which fails this mailbox alone."""
    if endpoint.auth != "password":
        return None
    secret = override or endpoint.password
    if isinstance(secret, CapturedSecret):
        # Imported only here: its cipher library costs every run's start-up, and few plans use it.
        from runners.connectors.captured import captured_password

        return captured_password(secret, user)
    if secret is endpoint.password and secret is not None:
        secret = Secret(secret.ref.replace("{user}", user))
    if secret is None:
        raise AuthError(endpoint.address, f"LOGIN {user}", "no password is configured for this user")
    return secret.reveal()

"""Open a session for one mailbox of a plan: the functions ``runners.adapters`` names per ``type``.

Their return types make mypy hold each adapter to the interface it implements.
"""

from __future__ import annotations

from pathlib import Path

from runners.connectors.base import SourceSession, TargetSession
from runners.connectors.imap_login import open_imap
from runners.connectors.imap_source import ImapSource
from runners.connectors.imap_target import ImapTarget
from runners.connectors.maildir_source import open_maildir_source
from runners.connectors.pop3_source import open_pop3_source
from runners.errors import AuthError
from runners.plan.model import Endpoint, MailboxEntry, Secret


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


def imap_source(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    user = entry.source
    return ImapSource(open_imap(endpoint, user, user_password(endpoint, user, entry.source_password)))


def pop3_source(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    user = entry.source
    master = None
    if endpoint.auth == "master":
        assert endpoint.master_user is not None and endpoint.master_password is not None
        master = (endpoint.master_user, endpoint.master_password.reveal())
    return open_pop3_source(endpoint, user, user_password(endpoint, user, entry.source_password), master)


def maildir_source(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    assert endpoint.path is not None
    return open_maildir_source(Path(endpoint.path.replace("{user}", entry.source)), endpoint.maildir_layout)


def imap_target(endpoint: Endpoint, entry: MailboxEntry) -> TargetSession:
    user = entry.target
    return ImapTarget(open_imap(endpoint, user, user_password(endpoint, user, entry.target_password)))

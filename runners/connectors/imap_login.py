"""Open an authenticated IMAP connection for one user of a plan endpoint."""

from __future__ import annotations

from runners.connectors.tls import tls_context
from runners.errors import AuthError
from runners.imap.wire import ImapConnection
from runners.plan.model import Endpoint


def login_name(endpoint: Endpoint, user: str) -> str:
    """The identity a master login is spelled with (for display and for the LOGIN command)."""
    if endpoint.auth == "master" and endpoint.login_template:
        return endpoint.login_template.format(user=user, master=endpoint.master_user or "")
    return user


def open_imap(endpoint: Endpoint, user: str, password: str | None) -> ImapConnection:
    """Connect, secure and log in as ``user``: master (SASL PLAIN authzid or template) or password."""
    assert endpoint.host is not None and endpoint.port is not None
    conn = ImapConnection(
        endpoint.host,
        endpoint.port,
        security=endpoint.security,
        timeout=endpoint.timeout,
        ssl_context=tls_context(endpoint) if endpoint.security != "plain" else None,
    )
    conn.connect()
    try:
        if endpoint.auth == "master":
            assert endpoint.master_user is not None and endpoint.master_password is not None
            secret = endpoint.master_password.reveal()
            if endpoint.login_template:
                conn.login(login_name(endpoint, user), secret)
            else:
                conn.authenticate_plain(endpoint.master_user, secret, authzid=user)
        else:
            if password is None:
                raise AuthError(conn.server, f"LOGIN {user}", "no password is configured for this user")
            conn.login(user, password)
    except BaseException:
        conn.close()
        raise
    return conn

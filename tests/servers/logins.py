"""Count the logins a private Dovecot accepted, from its own log (``auth_verbose`` is on).

Tests and benches use it to show how many sessions a command opened per mailbox: each accepted
IMAP or POP3 login is one ``<proto>-login: Info: Login: user=<name>`` line.
"""

from __future__ import annotations

import re
from collections import Counter

from servers.dovecot import DovecotServer

_LOGIN = re.compile(r"(?:imap|pop3)-login: Info: Login: user=<([^>]*)>")


def dovecot_logins(server: DovecotServer) -> Counter[str]:
    """Accepted logins so far, per user name (the master user's logins count as the user's)."""
    assert server.root is not None, "the server is not running"
    text = (server.root / "dovecot.log").read_text(errors="replace")
    return Counter(_LOGIN.findall(text))

"""Who did something, as the state store records it: ``user@host`` of the process."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping


def ssh_client(env: Mapping[str, str] | None = None) -> str | None:
    """``address port`` of the SSH client this session came in from (``SSH_CONNECTION``, or the
    older ``SSH_CLIENT``); None for a session not opened by SSH."""
    env = os.environ if env is None else env
    for name in ("SSH_CONNECTION", "SSH_CLIENT"):
        fields = env.get(name, "").split()
        if len(fields) >= 2:
            return f"{fields[0]} {fields[1]}"
    return None


def operator_label(env: Mapping[str, str] | None = None) -> str:
    """``user@host``, and the SSH client when there is one: who, as the audit trail shows it."""
    client = ssh_client(env)
    return operator_id() + (f" (ssh from {client})" if client else "")


def operator_id() -> str:
    """``user@host`` of this process (the uid when the account has no name, as in some containers)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name: no USER/LOGNAME and no passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"

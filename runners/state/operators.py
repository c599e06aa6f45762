"""Who did something, as the state store records it: ``user@host`` of the process."""

from __future__ import annotations

import getpass
import os
import socket


def operator_id() -> str:
    """``user@host`` of this process (the uid when the account has no name, as in some containers)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name: no USER/LOGNAME and no passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"

"""Who acts on a wave: the OS user, the host, and the SSH client when the session came in by SSH."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from runners.state.operators import operator_id, ssh_client
from runners.state.wave_step_rows import Actor


def current_actor(environ: Mapping[str, str] | None = None) -> Actor:
    """This process's operator. The SSH client is ``address port`` from ``SSH_CONNECTION`` (or the
    older ``SSH_CLIENT``); a session not opened by SSH has none."""
    env = os.environ if environ is None else environ
    user = operator_id().rpartition("@")[0]
    return Actor(user, socket.gethostname(), ssh_client(env))

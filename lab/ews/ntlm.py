"""NTLM over HTTP as IIS does it for EWS: a connection-based handshake checked by pyspnego's NTLM
acceptor (NTLMv2 verified against the password), after which the keep-alive connection stays
authenticated (IIS's default, authPersistSingleRequest=false).

pyspnego's acceptor reads its credential store from the file named by the ``NTLM_USER_FILE``
environment variable (Heimdal format ``DOMAIN:USER:PASSWORD``): the emulator writes one store per
process, adds the accounts of every emulator that accepts NTLM, and points the variable at it. That
is a process-wide side effect, so NTLM is off unless ``"ntlm"`` is in ``EwsConfig.auth_modes``.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import spnego
import spnego.exceptions

_store_lock = threading.Lock()
_store: Path | None = None


def register_accounts(accounts: Mapping[str, str]) -> None:
    """Add logon names and passwords to the process's NTLM credential store."""
    global _store
    with _store_lock:
        if _store is None:
            directory = Path(tempfile.mkdtemp(prefix="ews-emulator-ntlm-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            _store = directory / "ntlm-users"
            _store.touch(mode=0o600)
            os.environ["NTLM_USER_FILE"] = str(_store)
        lines = []
        for user, password in accounts.items():
            domain, _, name = user.rpartition("\\")
            lines.append(f"{domain}:{name}:{password}\n")
        with _store.open("a", encoding="utf-8") as store:
            store.writelines(lines)


class Handshake:
    """One connection's NTLM exchange: NEGOTIATE → CHALLENGE → AUTHENTICATE."""

    def __init__(self) -> None:
        self._context = spnego.server(protocol="ntlm")

    def step(self, token: str) -> tuple[str | None, str | None]:
        """(challenge to send back, None) while in progress; (None, logon name) once verified.
        Raises ValueError when the client's answer does not verify."""
        try:
            answer = self._context.step(base64.b64decode(token))
        except (spnego.exceptions.SpnegoError, ValueError) as exc:
            raise ValueError("NTLM authentication failed") from exc
        if not self._context.complete:
            return base64.b64encode(answer or b"").decode(), None
        principal = self._context.client_principal or ""
        return None, principal

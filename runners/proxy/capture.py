"""Credential capture's observer: a password a backend has just ACCEPTED is sealed (AES-GCM, the plan's
capture key, ``runners.connectors.captured``) and handed to the store writer; nothing else ever is.

The password is sealed at once, in the session's turn (microseconds), so only ciphertext waits in
memory for the next batch. The same password seen again for a user is not sealed again until a day
has passed (which also renews its expiry): a busy user costs no write per login.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time

from runners.connectors.captured import Keyring
from runners.proxy.contracts import LoginEvent, Outcome, Password
from runners.proxy.store_writer import StoreWriter

log = logging.getLogger(__name__)

#: A password seen again is sealed anew (renewing its expiry) at most this often.
RESEAL_AFTER = 86400.0


class CaptureObserver:
    def __init__(self, writer: StoreWriter, keyring: Keyring, backends: frozenset[str] | None = None) -> None:
        """``backends``: the backends whose accepted passwords are kept (None: every one)."""
        self.writer = writer
        self.keyring = keyring
        self.backends = backends
        # A per-process random key: the fingerprints below say "same password as before" and nothing
        # else, and die with the process.
        self._pepper = os.urandom(32)
        self._seen: dict[tuple[str, str], tuple[bytes, float]] = {}

    async def login_finished(self, event: LoginEvent, password: Password | None) -> None:
        route = event.route
        if event.outcome is not Outcome.ACCEPTED or password is None or route is None:
            return
        if self.backends is not None and route.backend not in self.backends:
            return
        try:
            value = password.reveal()
            mark = hmac.new(self._pepper, value.encode("utf-8"), hashlib.sha256).digest()
            now = time.time()
            seen = self._seen.get((route.user, route.backend))
            if seen is not None and hmac.compare_digest(seen[0], mark) and now - seen[1] < RESEAL_AFTER:
                return
            self.writer.add_credential(
                self.keyring.seal(route.user, route.backend, route.backend_login, value, now)
            )
            self._seen[(route.user, route.backend)] = (mark, now)
        except Exception as exc:  # an observer never fails a login; the words carry no password
            log.warning("proxy: the password of %s was not captured: %s", route.user, type(exc).__name__)

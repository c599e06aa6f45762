"""Deterministic crash points for the crash-safety tests.

``CUTOVER_FAULT=kill-after-append:N`` makes the process SIGKILL itself right after the N-th APPEND
batch was accepted by the target and before its result reaches the ledger: the narrowest window
the intent log must cover. Random ``kill -9`` timing in the tests covers everything else. Unset in
production, this costs one integer comparison per batch.
"""

from __future__ import annotations

import os
import signal
import threading

_spec = os.environ.get("CUTOVER_FAULT", "")
_name, _, _count = _spec.partition(":")
_remaining = int(_count) if _name == "kill-after-append" and _count.isdigit() else 0
_lock = threading.Lock()


def after_append() -> None:
    global _remaining
    if not _remaining:
        return
    with _lock:
        _remaining -= 1
        if _remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)

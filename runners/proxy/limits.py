"""The limits before login: unauthenticated connections per client address, and failed logins per
address and per user answered later and later, then refused for a while (as Dovecot's auth penalty
does: 2 s, doubled per failure up to 15 s by default).

``LoginLimits`` keeps them in memory, for one process (``shared_limits.SharedLoginLimits`` shares
them between the worker processes; the sessions see either as ``Limits``). Counters of addresses and users that stopped failing are forgotten once their
lock-out period has passed, so an attacker's many addresses don't grow it without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from runners.plan.proxy_model import LimitsOption

#: Counters are swept of stale entries when there are more than this many.
_SWEEP_ABOVE = 4096


class Limits(Protocol):
    """What the sessions ask of the limits before login."""

    def admit(self, address: str) -> bool: ...
    def release(self, address: str) -> None: ...
    def unauthenticated(self, address: str) -> int: ...
    def locked(self, address: str, user: str) -> bool: ...
    def failed(self, address: str, user: str) -> float: ...
    def succeeded(self, address: str, user: str) -> None: ...


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    locked_until: float = 0.0


class LoginLimits:
    def __init__(self, options: LimitsOption, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        self._unauthenticated: dict[str, int] = {}
        self._failures: dict[str, _Failures] = {}

    # -- unauthenticated connections -----------------------------------------------------------

    def admit(self, address: str) -> bool:
        """Count one more unauthenticated connection from ``address``; False when over the limit."""
        count = self._unauthenticated.get(address, 0)
        if count >= self.options.max_unauthenticated_per_address:
            return False
        self._unauthenticated[address] = count + 1
        return True

    def release(self, address: str) -> None:
        """The connection logged in or ended."""
        count = self._unauthenticated.get(address, 0) - 1
        if count > 0:
            self._unauthenticated[address] = count
        else:
            self._unauthenticated.pop(address, None)

    def unauthenticated(self, address: str) -> int:
        return self._unauthenticated.get(address, 0)

    # -- failed logins -------------------------------------------------------------------------

    def locked(self, address: str, user: str) -> bool:
        """Whether logins from ``address`` or for ``user`` are refused for now."""
        if not self._failures:
            return False
        now = self._clock()
        for key in limit_keys(address, user):
            entry = self._failures.get(key)
            if entry is not None and entry.locked_until > now:
                return True
        return False

    def failed(self, address: str, user: str) -> float:
        """Record a failed login; the seconds to wait before answering it."""
        now = self._clock()
        if len(self._failures) > _SWEEP_ABOVE:
            self._sweep(now)
        worst = 0
        for key in limit_keys(address, user):
            entry = self._failures.get(key)
            if entry is None or (entry.locked_until and entry.locked_until <= now):
                entry = self._failures[key] = _Failures(0, now)
            entry.count += 1
            entry.last = now
            if entry.count >= self.options.lockout_failures:
                entry.locked_until = now + self.options.lockout_seconds
            worst = max(worst, entry.count)
        return failure_delay(self.options, worst)

    def succeeded(self, address: str, user: str) -> None:
        if self._failures:
            for key in limit_keys(address, user):
                self._failures.pop(key, None)

    def _sweep(self, now: float) -> None:
        keep = self.options.lockout_seconds
        stale = [k for k, e in self._failures.items() if e.locked_until <= now and now - e.last > keep]
        for key in stale:
            del self._failures[key]


def failure_delay(options: LimitsOption, failures: int) -> float:
    """The wait before answering the ``failures``-th failure in a row: doubled each time, up to the maximum."""
    delay = options.auth_failure_delay_seconds * 2.0 ** min(failures - 1, 64)  # 2.0 ** 1024 overflows
    return min(delay, options.auth_failure_max_delay_seconds)


#: A client address's counters and a user's share one table: their keys differ by this prefix.
_ADDRESS, _USER = "a:", "u:"


def limit_keys(address: str, user: str) -> tuple[str, str]:
    """The counters' keys for a client address and for a user (the user's whatever its case)."""
    # One function for both, not one each: the shared limits ask for them twice a login, and in
    # CPython the calls would cost more than the keys.
    return _ADDRESS + address, _USER + user.strip().lower()


def address_key(address: str) -> str:
    """The key of a client address's counters alone (``limit_keys``' first)."""
    return _ADDRESS + address

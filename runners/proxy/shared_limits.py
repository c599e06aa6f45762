"""The limits before login (``limits.LoginLimits``' rules) shared by every worker process of the proxy,
so that the plan's limits hold for the whole proxy and not once per worker.

A fixed-size table in shared memory (a memfd mapped by the parent before it forks the workers), one
slot per client address or user: the slot's key is a 64-bit hash, then the unauthenticated
connections, the failures in a row, the time of the last failure and the end of a lock-out. Each
call takes a POSIX record lock on the memfd for a few microseconds; the kernel drops that lock when
its holder dies, even by SIGKILL, so a dead worker never blocks the others (a semaphore would).

A key lives in one of ``_PROBE`` slots after its hash; a slot is free when it counts nothing and its
failures are stale. Should all of them be taken (an attacker's many addresses), the call is let
through uncounted rather than refusing everybody: the per-process file limit still bounds them. A
slot once used never becomes empty again (it is reused), so a search stops at the first empty slot.

Only the counting calls take the lock. ``locked`` and the common case of ``succeeded`` (nothing to
reset) read without it: eight aligned bytes are read whole, and a lock-out a few microseconds old
missed by a race is no weaker than a login that came a moment earlier.

The key's hash is Python's own ``hash``: the same in every worker, as all are forked from one parent
(the string hash secret is chosen at interpreter start); never share the table with a process that
was not forked from it.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable
from fcntl import LOCK_EX, LOCK_UN, lockf

from runners.plan.proxy_model import LimitsOption
from runners.proxy.limits import address_key, failure_delay, limit_keys

#: key hash, unauthenticated connections, failures in a row, last failure, locked until. In the
#: host's byte order: single fields are read and written through typed views of the table (a
#: memoryview's item costs a fraction of a Struct's call), which know no other.
_SLOT = struct.Struct("=QiIdd")
#: A slot's fields as items of those views: slot i's key hash is ``_keys[i * _KEY_STEP]``, etc.
_KEY_STEP = _SLOT.size // 8  # "Q"
_UNAUTH_STEP, _UNAUTH_AT = _SLOT.size // 4, 2  # "i", the bytes 8-11
_FAILS_STEP, _FAILS_AT = _SLOT.size // 4, 3  # "I", the bytes 12-15
_UNTIL_STEP, _UNTIL_AT = _SLOT.size // 8, 3  # "d", the bytes 24-31
_MASK = 0xFFFF_FFFF_FFFF_FFFF
_SLOTS = 32768  # 1 MiB of shared memory
_PROBE = 16


class SharedLoginLimits:
    """``LoginLimits``' methods over a table every process forked after ``__init__`` shares."""

    def __init__(
        self, options: LimitsOption, clock: Callable[[], float] = time.monotonic, slots: int = _SLOTS
    ) -> None:
        self.options = options
        self._clock = clock  # CLOCK_MONOTONIC is one clock for every process of the host
        self._slots = slots
        self._fd = os.memfd_create("cutover-proxy-limits", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, slots * _SLOT.size)
        self._table = mmap.mmap(self._fd, slots * _SLOT.size, mmap.MAP_SHARED)
        view = memoryview(self._table)
        self._keys, self._unauth, self._fails, self._untils = (
            view.cast("Q"),
            view.cast("i"),
            view.cast("I"),
            view.cast("d"),
        )
        self._views = (view, self._keys, self._unauth, self._fails, self._untils)

    def close(self) -> None:
        for view in reversed(self._views):  # an mmap with views of it can't be closed
            view.release()
        self._table.close()
        os.close(self._fd)

    # No context manager for the lock: its generator's frames cost more than the system calls. admit
    # and release, once a session each, even call ``lockf`` inline; the rarer calls use these two.
    def _lock(self) -> None:
        lockf(self._fd, LOCK_EX)

    def _unlock(self) -> None:
        lockf(self._fd, LOCK_UN)

    # -- the table -----------------------------------------------------------------------------

    def _read(self, index: int) -> tuple[int, int, int, float, float]:
        return _SLOT.unpack_from(self._table, index * _SLOT.size)

    def _write(self, index: int, digest: int, unauth: int, fails: int, last: float, until: float) -> None:
        _SLOT.pack_into(self._table, index * _SLOT.size, digest, unauth, fails, last, until)

    def _find(self, digest: int, now: float, create: bool) -> int | None:
        """The slot of the key whose digest is ``digest``; with ``create``, a free one made its own
        when it has none."""
        keys, slots = self._keys, self._slots
        start = digest % slots
        # The loop's first step unrolled: nearly every key is in its first slot, or in none.
        held = keys[start * _KEY_STEP]
        if held == digest:
            return start
        if held == 0:
            if not create:
                return None
            self._write(start, digest, 0, 0, 0.0, 0.0)
            return start
        free = None
        for step in range(_PROBE):
            index = (start + step) % slots
            held = keys[index * _KEY_STEP]
            if held == digest:
                return index
            if held == 0:  # never used: the key is in no slot after this one
                free = index if free is None else free
                break
            if create and free is None and self._stale(*self._read(index)[1:], now):
                free = index
        if create and free is not None:
            self._write(free, digest, 0, 0, 0.0, 0.0)
            return free
        return None

    def _slot(self, key: str) -> int | None:
        """The slot ``key`` holds, or None: ``_find`` without creating (which needs no clock), its
        usual cases inline, in one call where there were two (``_digest``, ``_find``): in CPython a
        call costs about as much as the lookup itself."""
        digest = (hash(key) & _MASK) or 1  # _digest's
        index = digest % self._slots
        held = self._keys[index * _KEY_STEP]
        if held == digest:
            return index
        return None if held == 0 else self._find(digest, 0.0, False)

    def _stale(self, unauth: int, fails: int, last: float, until: float, now: float) -> bool:
        return unauth <= 0 and (fails == 0 or (until <= now and now - last > self.options.lockout_seconds))

    # -- unauthenticated connections -----------------------------------------------------------
    # Only the slot's count is read and written here (the other fields are left as they are).

    def admit(self, address: str) -> bool:
        digest = (hash(address_key(address)) & _MASK) or 1  # _digest's
        lockf(self._fd, LOCK_EX)
        try:
            index = self._find(digest, self._clock(), create=True)
            if index is None:
                return True  # the table is full: let it through uncounted
            counts, at = self._unauth, index * _UNAUTH_STEP + _UNAUTH_AT
            if counts[at] >= self.options.max_unauthenticated_per_address:
                return False
            counts[at] += 1
            return True
        finally:
            lockf(self._fd, LOCK_UN)

    def release(self, address: str) -> None:
        key = address_key(address)
        lockf(self._fd, LOCK_EX)
        try:
            index = self._slot(key)
            if index is not None:
                counts, at = self._unauth, index * _UNAUTH_STEP + _UNAUTH_AT
                counts[at] = max(0, counts[at] - 1)
        finally:
            lockf(self._fd, LOCK_UN)

    def unauthenticated(self, address: str) -> int:
        digest = _digest(address_key(address))
        self._lock()
        try:
            index = self._find(digest, self._clock(), create=False)
            return 0 if index is None else self._read(index)[1]
        finally:
            self._unlock()

    # -- failed logins -------------------------------------------------------------------------

    def locked(self, address: str, user: str) -> bool:
        untils = self._untils
        for key in limit_keys(address, user):  # without the lock: see the module's words
            index = self._slot(key)
            if index is not None and untils[index * _UNTIL_STEP + _UNTIL_AT] > self._clock():
                return True
        return False

    def failed(self, address: str, user: str) -> float:
        now = self._clock()
        worst = 1
        self._lock()
        try:
            for key in limit_keys(address, user):
                index = self._find(_digest(key), now, create=True)
                if index is None:
                    continue  # the table is full: the base delay, uncounted
                digest, unauth, fails, _, until = self._read(index)
                if until and until <= now:  # a lock-out that ended starts the count again
                    fails, until = 0, 0.0
                fails += 1
                if fails >= self.options.lockout_failures:
                    until = now + self.options.lockout_seconds
                self._write(index, digest, unauth, fails, now, until)
                worst = max(worst, fails)
        finally:
            self._unlock()
        return failure_delay(self.options, worst)

    def succeeded(self, address: str, user: str) -> None:
        fails = self._fails
        keys = []
        for key in limit_keys(address, user):
            index = self._slot(key)
            if index is not None and fails[index * _FAILS_STEP + _FAILS_AT] > 0:
                keys.append(key)
        if not keys:
            return  # the common case: nothing to reset, no lock taken
        self._lock()
        try:
            for key in keys:
                index = self._slot(key)
                if index is not None:
                    digest, unauth, *_ = self._read(index)
                    self._write(index, digest, unauth, 0, 0.0, 0.0)
        finally:
            self._unlock()


def _digest(key: str) -> int:
    """64 bits of the key, never 0 (0 marks an empty slot)."""
    return (hash(key) & _MASK) or 1

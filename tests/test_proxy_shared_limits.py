"""The limits the proxy's worker processes share (``shared_limits.SharedLoginLimits``): the same rules
as one process's ``LoginLimits``, a count made in a forked process seen by its parent, a full table
that lets a caller through uncounted, and slots of stale entries reused."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from runners.plan.proxy_model import LimitsOption
from runners.proxy.limits import Limits, LoginLimits
from runners.proxy.shared_limits import SharedLoginLimits

RULES = LimitsOption(max_unauthenticated_per_address=2, auth_failure_delay_seconds=2,
                     auth_failure_max_delay_seconds=15, lockout_failures=5, lockout_seconds=60)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Make = Callable[[LimitsOption, Clock], Limits]
KINDS: list[Make] = [lambda o, c: LoginLimits(o, c), lambda o, c: SharedLoginLimits(o, c)]


@pytest.mark.parametrize("make", KINDS, ids=["one process", "shared"])
def test_both_kinds_delay_lock_out_and_count_alike(make: Make) -> None:
    clock = Clock()
    limits = make(RULES, clock)
    assert [limits.failed("10.0.0.1", "alice") for _ in range(4)] == [2, 4, 8, 15]
    assert not limits.locked("10.0.0.1", "alice")
    limits.failed("10.0.0.1", "alice")
    assert limits.locked("10.0.0.1", "someone-else") and limits.locked("10.0.0.2", "ALICE")
    assert not limits.locked("10.0.0.2", "bob")
    clock.now += 61
    assert not limits.locked("10.0.0.1", "alice")
    assert limits.failed("10.0.0.1", "alice") == 2  # counting starts again after a lock-out
    limits.succeeded("10.0.0.1", "alice")
    assert limits.failed("10.0.0.1", "alice") == 2
    assert limits.admit("a") and limits.admit("a") and not limits.admit("a") and limits.admit("b")
    limits.release("a")
    assert limits.admit("a") and limits.unauthenticated("a") == 2
    limits.succeeded("a", "carol")  # a success keeps the address's connections counted
    assert limits.unauthenticated("a") == 2


def test_a_count_made_in_a_forked_worker_is_seen_by_every_process() -> None:
    limits = SharedLoginLimits(RULES, Clock())
    assert limits.admit("192.0.2.7")
    pid = os.fork()
    if pid == 0:  # the "worker": one more connection and five failures for alice
        ok = limits.admit("192.0.2.7")
        for _ in range(5):
            limits.failed("198.51.100.1", "alice")
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not limits.admit("192.0.2.7")  # 2 of 2: one here, one there
    assert limits.locked("203.0.113.9", "alice")


def test_a_full_table_lets_callers_through_uncounted_and_stale_slots_are_reused() -> None:
    clock = Clock()
    limits = SharedLoginLimits(LimitsOption(max_unauthenticated_per_address=1, lockout_seconds=60), clock,
                               slots=4)  # fmt: skip
    held = [f"10.0.0.{n}" for n in range(4)]
    assert all(limits.admit(a) for a in held)
    assert limits.admit("10.9.9.9") and limits.admit("10.9.9.9")  # no slot: not counted, not refused
    assert limits.unauthenticated("10.9.9.9") == 0
    limits.release(held[0])  # a slot that counts nothing is free again
    assert limits.admit("10.9.9.9") and not limits.admit("10.9.9.9")
    assert limits.failed("10.0.0.1", "dave") == 2.0  # counted where it can be, uncounted elsewhere

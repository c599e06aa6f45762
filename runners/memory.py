"""Keep a long, many-threaded run's memory where its work is: glibc's allocator tuned at start.

A run moves messages of up to tens of megabytes through several worker threads. Two defaults of
glibc's malloc then hold on to memory long after it was freed:
- the mmap threshold is dynamic: once a large block (a message, a batch, a request body) is freed,
  the threshold rises to its size (up to 32 MiB), so the next large blocks come from the heap,
  where freed space fragments instead of going back to the system;
- each thread may get an arena of its own (up to 8 per core), each keeping its free space.
Capping the arenas at 2 and fixing the mmap threshold keeps the peak near the data actually in
flight (measured in docs/benchmarks.md). At start (``tune_allocator``) the threshold is 128 KiB:
blocks over it are mmap'd and go back to the system when freed, which holds the Exchange and
Microsoft 365 targets' request bodies near their goal of 120 MB.

A run into an IMAP target holds far less (83 MB for 8 mailboxes of 5,000), so ``favour_speed``
moves it to 4 MiB with a 32 MiB trim threshold: at 128 KiB every body over it was mmap'd and
unmapped again, page faults and all. 8 mailboxes of 1,500: page faults 43,000 -> 21,000, CPU
2.08 -> 1.98 s (medians of 8 pairs), peak RSS 83 -> 86-89 MB for 8 mailboxes of 5,000; on the
Exchange targets the same setting cost 4-10 MB of their 120 MB (Graph 104 -> 114 MB), so they keep
128 KiB. Nothing else changes: it is the same allocator, and MALLOC_* environment variables set by
the operator win.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2
#: ``favour_speed``'s thresholds.
FAST_MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
FAST_TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024


def tune_allocator() -> bool:
    """Apply the tuning (glibc on Linux only; a no-op elsewhere or when the operator set MALLOC_*).
    Call it before worker threads start. Returns whether it was applied."""
    return _mallopt(((_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_ARENA_MAX, ARENA_MAX)))


def favour_speed() -> bool:
    """For a run whose memory has room (an IMAP target): the larger thresholds, fewer page faults.
    A no-op where ``tune_allocator`` is. Returns whether it was applied."""
    return _mallopt(
        ((_M_MMAP_THRESHOLD, FAST_MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, FAST_TRIM_THRESHOLD_BYTES))
    )


def tune_for_target(target_type: str) -> bool:
    """After the plan is read: ``favour_speed`` for a run into an IMAP target, the start's tuning
    kept for the others. Returns whether anything changed."""
    return target_type == "imap" and favour_speed()


def _mallopt(settings: tuple[tuple[int, int], ...]) -> bool:
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        # The process's own symbols, which hold the C library's: find_library would run ldconfig in
        # a subprocess (and import subprocess) on every start.
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all([bool(mallopt(param, value)) for param, value in settings])  # a list: each one tried

"""Keep a long, many-threaded run's memory where its work is: glibc's allocator tuned at start.

A run moves messages of up to tens of megabytes through several worker threads. Two defaults of
glibc's malloc then hold on to memory long after it was freed:
- the mmap threshold is dynamic: once a large block (a message, a batch, a request body) is freed,
  the threshold rises to its size (up to 32 MiB), so the next large blocks come from the heap,
  where freed space fragments instead of going back to the system;
- each thread may get an arena of its own (up to 8 per core), each keeping its free space.
Capping the arenas at 2 and fixing the mmap threshold keeps the peak near the data actually in
flight (measured in docs/benchmarks.md). The threshold is 4 MiB, with up to 32 MiB of free space
at the heap's top kept rather than given back (the trim threshold): at 128 KiB, where it was first
fixed, every body over it was mmap'd and unmapped again, page faults and all. 8 mailboxes of 1,500:
page faults 43,000 -> 21,000, CPU 2.08 -> 1.98 s (medians of 8 pairs); peak RSS up to 10 MB
higher (Graph, 8 mailboxes: 104 -> 114 MB), every memory goal still met. Nothing else changes:
it is the same allocator, and MALLOC_* environment variables set by the operator win.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
ARENA_MAX = 2


def tune_allocator() -> bool:
    """Apply the tuning (glibc on Linux only; a no-op elsewhere or when the operator set MALLOC_*).
    Call it before worker threads start. Returns whether it was applied."""
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
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
                (_M_ARENA_MAX, ARENA_MAX))  # fmt: skip
    return all([bool(mallopt(param, value)) for param, value in settings])  # a list: each one tried

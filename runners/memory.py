"""Keep a long, many-threaded run's memory where its work is: glibc's allocator tuned at start.

A run moves messages of up to tens of megabytes through several worker threads. Two defaults of
glibc's malloc then hold on to memory long after it was freed:
- the mmap threshold is dynamic: once a large block (a message, a batch, a request body) is freed,
  the threshold rises to its size, so the next large blocks come from the heap, where freed space
  fragments instead of going back to the system;
- each thread may get an arena of its own (up to 8 per core), each keeping its free space.
Fixing the threshold at 128 KiB (mmap'd blocks are returned on free) and capping the arenas at 2
keeps the peak near the data actually in flight (measured in docs/benchmarks.md). Nothing else
changes: it is the same allocator, and MALLOC_* environment variables set by the operator win.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt(3) parameters (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
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
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_ARENA_MAX, ARENA_MAX))

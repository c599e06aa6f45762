"""runners.memory: which blocks glibc maps on their own once the allocator is tuned, and when it
leaves the operator's MALLOC_* settings alone. Each case runs in a fresh interpreter, as the tuning
is process-wide and must come before threads start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runners.memory as memory

ROOT = Path(__file__).resolve().parents[1]

#: Allocates one block of each size and reports how many of the blocks glibc mmap'd on their own
#: (mallinfo2's hblks). The blocks stay allocated while counted.
CHILD = """
import ctypes, json, sys
import runners.memory as memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
applied = memory.tune_allocator()
if sys.argv[2] != "start":  # a target type: the run's tuning once the plan is read
    applied = memory.tune_for_target(sys.argv[2]) and applied
mapped = {}
for size in json.loads(sys.argv[1]):
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    mapped[size] = libc.mallinfo2().hblks - before
    libc.free(ctypes.c_void_p(block))
print(json.dumps({"applied": applied, "mapped": mapped}))
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="the tuning is glibc's",
)


def _child(sizes: list[int], extra_env: dict[str, str], mode: str = "start") -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | extra_env
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(sizes), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


#: glibc maps a block over the threshold only when the heap's free top can't hold it, so the blocks
#: that must be mapped are made larger than any free top a fresh interpreter has (a MiB and more).
MIB = 1024 * 1024


def test_blocks_under_the_threshold_come_from_the_heap_larger_ones_are_mapped() -> None:
    """Under the fixed threshold a block is not mmap'd and unmapped again (page faults, CPU); over
    it a block is, so it goes back to the system when freed, however large the blocks before."""
    threshold = memory.MMAP_THRESHOLD_BYTES
    assert threshold < MIB
    result = _child([threshold // 2, 64 * MIB, threshold // 2, 2 * MIB], {})
    assert result["applied"] is True
    assert result["mapped"] == {str(threshold // 2): 0, str(64 * MIB): 1, str(2 * MIB): 1}


def test_a_run_into_an_imap_target_takes_the_larger_threshold() -> None:
    """An IMAP target's run (favour_speed): a body between the start's threshold and 4 MiB comes from the heap (no mmap and
    page faults per message); a larger one is still mapped and given back when freed."""
    between = 2 * MIB
    assert memory.MMAP_THRESHOLD_BYTES < between < memory.FAST_MMAP_THRESHOLD_BYTES
    large = memory.FAST_MMAP_THRESHOLD_BYTES * 2
    assert _child([between, large], {})["mapped"] == {str(between): 1, str(large): 1}
    result = _child([between, large], {}, mode="imap")
    assert result["applied"] is True and result["mapped"] == {str(between): 0, str(large): 1}
    # The Exchange targets keep the start's threshold (their request bodies' memory goal).
    for target in ("ews", "graph"):
        kept = _child([between, large], {}, mode=target)
        assert kept["applied"] is False and kept["mapped"] == {str(between): 1, str(large): 1}


def test_the_operators_malloc_settings_win() -> None:
    """MALLOC_* set: neither tuning is applied, the operator's threshold holds (1 MiB here: a 2 MiB
    block is mapped, which under favour_speed's 4 MiB it would not be)."""
    result = _child([2 * MIB], {"MALLOC_MMAP_THRESHOLD_": str(MIB)}, mode="imap")
    assert result["applied"] is False
    assert result["mapped"] == {str(2 * MIB): 1}

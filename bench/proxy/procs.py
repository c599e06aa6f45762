"""CPU and memory of a peer's whole process tree, from /proc."""

from __future__ import annotations

import os
from pathlib import Path

from measure import tree_cpu_seconds, tree_cpu_split

__all__ = ["tree_cpu_seconds", "tree_cpu_split", "tree_memory_kb", "tree_pids"]


def tree_pids(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    out = []
    for pid in parents:
        p = pid
        while p > 1:
            if p == root:
                out.append(pid)
                break
            p = parents.get(p, 0)
    return out


def tree_memory_kb(root: int) -> tuple[int, int]:
    """(RSS, PSS) summed over the tree, in KB. PSS shares each page among the processes mapping it,
    so a forking server's shared pages count once; RSS counts them in every process."""
    rss = pss = 0
    for pid in tree_pids(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss

"""Run a command and account for it exactly: wall time, CPU and peak RSS of that child alone.

``os.wait4`` (in ``launch.py``) returns the rusage of the one child reaped, so neither the
benchmark itself nor the Dovecot servers leak into the figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_LAUNCHER = Path(__file__).with_name("launch.py")


@dataclass(frozen=True, slots=True)
class Measured:
    argv: tuple[str, ...]
    returncode: int
    wall: float  # seconds
    cpu_user: float
    cpu_sys: float
    max_rss_kb: int
    stdout: str
    stderr: str

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


def run_measured(argv: Sequence[str], env: Mapping[str, str], log_dir: Path, name: str) -> Measured:
    """Run ``argv`` to completion through ``launch.py``; its output goes to ``log_dir/name.{out,err}``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path, usage_path = (log_dir / f"{name}.{ext}" for ext in ("out", "err", "rusage.json"))
    launcher = [sys.executable, "-I", "-S", str(_LAUNCHER), str(usage_path), *argv]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        # Its own session: a Ctrl-C meant for the benchmark must not kill the launcher before it
        # reaps; on any interruption we end the whole group ourselves.
        proc = subprocess.Popen(
            launcher, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        try:
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    # No result file: the launcher itself failed (its error is in the .err file).
    usage = json.loads(usage_path.read_text()) if usage_path.exists() else {"returncode": -1}
    return Measured(
        argv=tuple(argv),
        returncode=int(usage["returncode"]),
        wall=float(usage.get("wall", 0.0)),
        cpu_user=float(usage.get("cpu_user", 0.0)),
        cpu_sys=float(usage.get("cpu_sys", 0.0)),
        max_rss_kb=int(usage.get("max_rss_kb", 0)),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


@dataclass(frozen=True, slots=True)
class ParallelMeasured:
    runs: list[Measured]
    wall: float
    parallel: int

    @property
    def cpu(self) -> float:
        return sum(r.cpu for r in self.runs)

    @property
    def max_rss_kb(self) -> int:
        """Sum of the ``parallel`` largest peaks: what the processes could hold at one moment."""
        peaks = sorted((r.max_rss_kb for r in self.runs), reverse=True)
        return sum(peaks[: self.parallel])

    @property
    def failed(self) -> list[Measured]:
        return [r for r in self.runs if r.returncode != 0]


def run_parallel(
    jobs: Sequence[tuple[str, Sequence[str]]], env: Mapping[str, str], log_dir: Path, parallel: int
) -> ParallelMeasured:
    """Run named commands ``parallel`` at a time (a worker per slot takes the next job)."""
    pending = list(jobs)
    results: list[Measured] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                name, argv = pending.pop(0)
            measured = run_measured(argv, env, log_dir, name)
            with lock:
                results.append(measured)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(parallel, len(jobs)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ParallelMeasured(results, time.perf_counter() - started, len(threads))


# --- Dovecot's own CPU ---------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone between listing and reading
        return None
    return text[text.rindex(")") + 2 :].split()  # the command name may contain spaces


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU of a process tree, including children it has already reaped (their time moves into the
    reaper's cutime/cstime, so the total only grows)."""
    return sum(tree_cpu_split(root_pid))


def tree_cpu_split(root_pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process tree, reaped children included (as above)."""
    parents: dict[int, int] = {}
    fields: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat_fields(int(entry))
            if stat is not None:
                fields[int(entry)] = stat
                parents[int(entry)] = int(stat[1])
    user = system = 0
    for pid, stat in fields.items():
        if _descends_from(pid, root_pid, parents):
            user += int(stat[11]) + int(stat[13])  # utime cutime
            system += int(stat[12]) + int(stat[14])  # stime cstime
    return user / _CLOCK_TICKS, system / _CLOCK_TICKS


def _descends_from(pid: int, root: int, parents: Mapping[int, int]) -> bool:
    while pid > 1:
        if pid == root:
            return True
        pid = parents.get(pid, 0)
    return False

"""Profile ``cutover`` across all its threads (``python -m cProfile`` sees only the main thread).

    .venv/bin/python bench/profile_run.py -o /tmp/prof.out [--timer cpu|wall] -- run --plan ... --wave ...

Every thread started through ``threading`` gets its own profiler (``threading.setprofile`` runs
our hook as the thread's first profile event; enabling a profiler there replaces the hook); at exit
all of them are merged into one pstats file. ``--timer cpu`` counts each thread's own CPU time
(what "our CPU seconds" measures), ``wall`` counts time spent waiting on sockets too.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from cockpit.cli import main as cutover_main  # tiny: the subcommands import their modules lazily

_TIMERS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--output", required=True, help="pstats file to write")
    parser.add_argument("--timer", choices=sorted(_TIMERS), default="cpu")
    parser.add_argument("cutover_args", nargs=argparse.REMAINDER, help="arguments for cutover, after --")
    args = parser.parse_args()
    cutover_args = args.cutover_args[1:] if args.cutover_args[:1] == ["--"] else args.cutover_args
    timer = _TIMERS[args.timer]
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_thread_profile(frame: FrameType, event: str, arg: Any) -> None:
        profile = cProfile.Profile(timer)
        with lock:
            profiles.append(profile)
        profile.enable()

    threading.setprofile(start_thread_profile)
    main_profile = cProfile.Profile(timer)
    main_profile.enable()
    try:
        code = cutover_main(cutover_args)
    finally:
        main_profile.disable()
        threading.setprofile(None)
        stats = pstats.Stats(main_profile)
        with lock:
            for profile in profiles:
                stats.add(profile)
        stats.dump_stats(args.output)
    return code


if __name__ == "__main__":
    sys.exit(main())

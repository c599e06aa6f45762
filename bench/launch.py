"""Run one command and write its rusage as JSON: ``python -I -S launch.py RESULT.json CMD ARGS...``.

Why a separate launcher: Linux starts a child's ru_maxrss at the RSS of the process that forked
it (the forked copy's high-water mark survives exec). Forked straight from the benchmark, which
holds the corpus, every child would "peak" at 175 MB before doing anything. This launcher is a
bare interpreter (about 10 MB), below anything it runs, so the child's ru_maxrss is its own.
Wall time is taken here too, from spawn to reap, so the launcher's own start-up is not counted.
"""

import json
import os
import sys
import time


def main() -> int:
    result_path, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    result = {
        "returncode": code,
        "wall": wall,
        "cpu_user": usage.ru_utime,
        "cpu_sys": usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
    }
    with open(result_path, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs a command and writes its peak RSS (kB) to a file, from a process of its own.

Linux carries a forking parent's resident size into the child's ``ru_maxrss`` when the child execs:
a child of a pytest process that has grown to 400 MB reports at least 400 MB whatever it does itself.
Forked from this small launcher instead, the command's figure is its own.

    python rss_launcher.py RSS_FILE COMMAND [ARGS...]   exits with the command's exit status
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    rss_file, argv = sys.argv[1], sys.argv[2:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)  # noqa: S606 - the command is the test's own argv
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    Path(rss_file).write_text(str(usage.ru_maxrss))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())

"""Progress while a wave runs: live bars on a TTY, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from runners.engine.stats import RunStats
from runners.safe_text import safe

if TYPE_CHECKING:
    from rich.progress import TaskID

MB = 1_000_000


def rate_line(stats: RunStats, elapsed: float) -> str:
    t = stats.totals()
    done, total = stats.shown()
    rate = t["copied"] / elapsed if elapsed > 0 else 0.0
    mbps = t["bytes_copied"] / MB / elapsed if elapsed > 0 else 0.0
    remaining = max(total - done, 0)
    eta = f"{remaining / rate:.0f} s" if rate > 0 and remaining else "-"
    return (
        f"{done}/{total} messages ({t['copied']} copied, {t['duplicates_avoided']} already there, "
        f"{t['skipped']} skipped, {t['failed']} failed), {t['bytes_copied'] / MB:.1f} MB, "
        f"{rate:.0f} msg/s, {mbps:.1f} MB/s, ETA {eta}"
    )


class PlainProgress:
    """One line every ``interval`` seconds: for logs, pipes and ``--detach``."""

    def __init__(self, stats: RunStats, stream: TextIO = sys.stderr, interval: float = 5.0) -> None:
        self.stats, self.stream, self.interval = stats, stream, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def __enter__(self) -> PlainProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self.interval):
            active = [
                f"{m.source} ({safe(m.current_folder)})"
                for m in list(self.stats.mailboxes.values())
                if m.state == "running"
            ]
            stamp = time.strftime("%H:%M:%S")
            tail = f" | active: {', '.join(active[:4])}{' ...' if len(active) > 4 else ''}" if active else ""
            print(
                f"{stamp} {rate_line(self.stats, time.monotonic() - start)}{tail}",
                file=self.stream,
                flush=True,
            )


class TtyProgress:
    """A bar per active mailbox and a total bar with msg/s, MB/s and ETA (rich, not Textual)."""

    def __init__(self, stats: RunStats, stream: TextIO = sys.stderr) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.stats = stats
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=30),
            TextColumn("{task.completed:>7.0f}/{task.total:<7.0f}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
            refresh_per_second=4,
        )
        self._total = self._progress.add_task("total", total=0, rate="")
        self._tasks: dict[str, TaskID] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._start = time.monotonic()

    def __enter__(self) -> TtyProgress:
        self._progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._refresh()
        self._progress.stop()

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self._refresh()

    def _refresh(self) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        t = self.stats.totals()
        done, total = self.stats.shown()
        rate = f"{t['copied'] / elapsed:6.0f} msg/s {t['bytes_copied'] / MB / elapsed:6.1f} MB/s"
        self._progress.update(self._total, total=total, completed=done, rate=rate)
        for mailbox in list(self.stats.mailboxes.values()):
            task = self._tasks.get(mailbox.source)
            running = mailbox.state == "running"
            if task is None and running:
                task = self._tasks[mailbox.source] = self._progress.add_task(
                    mailbox.source[:28], total=0, rate=""
                )
            if task is None:
                continue
            mdone, mtotal = mailbox.shown()
            label = safe(mailbox.current_folder)[:18] if running else mailbox.state
            self._progress.update(task, total=mtotal, completed=mdone, rate=label, visible=running)

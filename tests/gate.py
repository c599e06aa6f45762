"""The test's end of a ``hold-<point>:N`` fault (runners/engine/faults.py): a Unix socket the run
connects to when it reaches the point, and waits on until the test lets it go.

So a test acts at an exact moment of a run (interrupt it, pause it, cancel a mailbox) and waits
for events, never for time.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Long enough for a loaded machine to reach any point of a test's run; a failure says where it was.
WAIT_SECONDS = 120


class Gate:
    def __init__(self) -> None:
        # A short directory of its own: a Unix socket path holds at most 107 bytes, and tmp_path under
        # pytest-xdist is longer than that.
        self._dir = Path(tempfile.mkdtemp(prefix="gate", dir="/tmp"))
        self.path = self._dir / "s"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self._held: list[socket.socket] = []

    def env(self, spec: str) -> dict[str, str]:
        """The environment that arms ``spec`` (``hold-after-append:3,...``) in a ``cutover`` process."""
        return {"CUTOVER_FAULT": spec, "CUTOVER_FAULT_GATE": str(self.path)}

    def wait_held(self, proc: subprocess.Popen[str] | None = None) -> str:
        """Until one thread of the run holds at the gate; returns the point it reached. Fails at once
        if ``proc`` ends first (it never reached the point)."""
        deadline = time.monotonic() + WAIT_SECONDS
        self._listener.settimeout(1.0)  # only to notice a run that ended; the wait itself is for the event
        while True:
            try:
                conn, _ = self._listener.accept()
                break
            except TimeoutError:
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(
                        f"the run ended (exit {proc.returncode}) before the fault point"
                    ) from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"no thread reached the fault point in {WAIT_SECONDS} s") from None
        conn.settimeout(WAIT_SECONDS)
        point = conn.recv(100).decode().strip()
        self._held.append(conn)
        return point

    def release(self) -> None:
        """Let the held threads go on; the gate stays, so a thread reaching an armed point holds again."""
        for conn in self._held:
            try:
                conn.sendall(b"g")
            except OSError:  # the held run was killed: nothing to let go
                pass
            conn.close()
        self._held.clear()

    def open(self) -> None:
        """Let everything go, for good: without the socket, the run never holds again."""
        self.release()
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)

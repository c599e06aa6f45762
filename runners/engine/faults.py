"""Deterministic fault points, so tests wait for an event in the run instead of for time.

The engine calls ``reached(point)`` at a few named points of a run. ``CUTOVER_FAULT`` arms some of
them, as a comma-separated list of ``<action>-<point>:<N>``:

``kill-<point>:N``
    SIGKILL this process the N-th time any thread reaches the point. ``kill-after-append:N`` is the
    narrowest window the intent log must cover: the target accepted the batch, the ledger never heard.
``fail-<point>:N``
    Raise ``InjectedFault`` (a plain ``RuntimeError``: a stand-in for a bug of ours or an
    unforeseen library error) the N-th time any thread reaches the point.
``hold-<point>:N``
    From the N-th time on, every thread reaching the point connects to the Unix socket named by
    ``CUTOVER_FAULT_GATE``, says ``<point>\\n`` and waits there until the test answers or closes the
    connection. Once the socket is gone, nothing holds any more. The rest of the process runs on
    (other mailboxes, the control watcher, signal handlers), so a test can act at an exact moment.
    ``tests/gate.py`` is the test's end.

The points:

``before-append``
    A batch is recorded as pending in the ledger (intent and UIDNEXT floor), nothing sent yet.
``after-append``
    The target accepted the batch; its outcome is not in the ledger yet.
``after-record``
    The batch's outcome is in the ledger.
``before-recovery``
    A folder's pending intents (a dead holder's, or a lost connection's) are about to be looked
    for on the target.
``paused``
    One turn of a paused mailbox's wait (a turn when the control watcher wakes it, or every poll).
``switch-dns-sent``
    ``cutover switch`` (runners/window): the DNS UPDATE was sent, not yet recorded or confirmed.
``rollback-dns-sent``
    ``cutover switch --step rollback``: the UPDATE restoring DNS was sent, not yet recorded.

Unset in production, ``reached`` costs one comparison.
"""

from __future__ import annotations

import os
import signal
import socket
import threading

ACTIONS = ("kill", "hold", "fail")
POINTS = (
    "before-append",
    "after-append",
    "after-record",
    "before-recovery",
    "paused",
    "switch-dns-sent",
    "rollback-dns-sent",
)


class InjectedFault(RuntimeError):
    """Raised by ``fail-<point>:N``: not a MigrationError, so the engine meets it as it would a bug."""


def parse_spec(spec: str) -> dict[str, tuple[str, int]]:
    """``kill-after-append:3,hold-paused:2`` → {"after-append": ("kill", 3), "paused": ("hold", 2)};
    anything else is ignored (an unknown spec must never change what a real run does)."""
    armed: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        action, _, point = name.partition("-")
        if action in ACTIONS and point in POINTS and count.isdigit() and int(count) > 0:
            armed[point] = (action, int(count))
    return armed


_armed = parse_spec(os.environ.get("CUTOVER_FAULT", ""))
_gate = os.environ.get("CUTOVER_FAULT_GATE", "")
_seen = dict.fromkeys(_armed, 0)
_lock = threading.Lock()


def reached(point: str) -> None:
    """The run is at ``point`` (one of ``POINTS``): kill or hold here if ``CUTOVER_FAULT`` says so."""
    if not _armed:
        return
    fault = _armed.get(point)
    if fault is None:
        return
    action, count = fault
    with _lock:
        _seen[point] += 1
        due = _seen[point] >= count if action == "hold" else _seen[point] == count
    if not due:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "fail":
        raise InjectedFault(f"injected fault at {point}")
    else:
        _hold(point)


def _hold(point: str) -> None:
    global _gate
    if not _gate:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gate:
            gate.connect(_gate)
            gate.sendall(f"{point}\n".encode())
            gate.recv(1)  # blocks until the test answers or lets go
    except OSError:
        _gate = ""  # the test removed the gate: the run goes on without holding

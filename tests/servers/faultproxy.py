"""A TCP proxy on loopback that breaks connections the way flaky networks do.

It sits between the engine and a real server and either resets a connection (RST) or silently
stalls it (no more data either way, the connection left open, as a NAT gateway that forgot the
flow does) at random byte offsets: the gaps between faults are drawn from ``gaps`` (bytes, counted
over every connection and both directions), so faults spread over a whole transfer however many
connections it takes. Faults are bounded: at most ``max_faults`` in all and none after
``fault_window`` seconds, so a run under the proxy always ends; a stalled connection is closed
after ``stall_limit`` seconds if the client has not given up on it first.

The offsets and kinds come from ``Random(seed)``: a failing run can be replayed with the same seed
(which connection a fault lands on depends on how the connections interleave). A test that needs a
fault at an exact place gives ``scripted`` instead: connection number -> (kind, direction, offset).
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

_CHUNK = 64 * 1024


@dataclass(slots=True)
class FaultLog:
    connections: int = 0
    resets: int = 0
    stalls: int = 0
    #: (connection number, "reset"/"stall", direction, byte offset in that connection and direction).
    faults: list[tuple[int, str, str, int]] = field(default_factory=list)

    @property
    def injected(self) -> int:
        return self.resets + self.stalls


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int,
        gaps: tuple[int, int] = (1_000_000, 3_000_000),
        stall_share: float = 0.5,
        max_faults: int = 20,
        fault_window: float = 60.0,
        stall_limit: float = 30.0,
        scripted: dict[int, tuple[str, str, int]] | None = None,
        master_user: str = "admin",
    ) -> None:
        self.upstream_port = upstream_port
        self.master_user = master_user  # lets a proxy stand in for a server in tests/lab.write_plan
        self.gaps = gaps
        self.stall_share = stall_share
        self.max_faults = max_faults
        self.fault_window = fault_window
        self.stall_limit = stall_limit
        self.scripted = scripted
        self.log = FaultLog()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._passed = 0  # bytes through the proxy so far, every connection and direction
        self._next_fault = self._rng.randint(*gaps)
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._port = int(self._listener.getsockname()[1])
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="faultproxy", daemon=True)

    @property
    def imap_port(self) -> int:
        return self._port

    def __enter__(self) -> FaultProxy:
        self._started = time.monotonic()
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        self._accepter.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)

    # -- deciding where faults go --------------------------------------------------------------

    def _fault_in(self, number: int, direction: str, before: int, size: int) -> tuple[str, int] | None:
        """Whether ``size`` more bytes of this connection and direction cross a fault: (kind, bytes
        to pass before it). ``before`` is what this connection and direction passed so far."""
        with self._lock:
            if self.scripted is not None:
                kind, where, offset = self.scripted.get(number, ("none", "down", 0))
                if kind == "none" or where != direction or not before <= offset < before + size:
                    return None
                return self._record(number, kind, direction, offset), offset - before
            start = self._passed
            self._passed += size
            if not start <= self._next_fault < self._passed:
                return None
            cut = self._next_fault - start
            kind = "stall" if self._rng.random() < self.stall_share else "reset"
            if self.log.injected >= self.max_faults or time.monotonic() - self._started >= self.fault_window:
                return None  # no more faults: the next one is never reached
            self._passed = self._next_fault  # what follows the fault never passes
            self._next_fault += self._rng.randint(*self.gaps)
            return self._record(number, kind, direction, before + cut), cut

    def _record(self, number: int, kind: str, direction: str, offset: int) -> str:
        if kind == "reset":
            self.log.resets += 1
        else:
            self.log.stalls += 1
        self.log.faults.append((number, kind, direction, offset))
        return kind

    # -- the proxy ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                number = self.log.connections
                self.log.connections += 1
            thread = threading.Thread(
                target=self._serve, args=(client, number), name=f"faultproxy-{number}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket, number: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        counted = {"down": 0, "up": 0}
        peer = {client: upstream, upstream: client}
        direction_of = {upstream: "down", client: "up"}
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ)
            sel.register(upstream, selectors.EVENT_READ)
            try:
                while not self._closing.is_set():
                    for key, _ in sel.select(timeout=0.5):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        data = sock.recv(_CHUNK)
                        if not data:
                            return
                        direction = direction_of[sock]
                        fault = self._fault_in(number, direction, counted[direction], len(data))
                        counted[direction] += len(data)
                        if fault is None:
                            peer[sock].sendall(data)
                            continue
                        kind, cut = fault
                        peer[sock].sendall(data[:cut])
                        if kind == "reset":
                            _reset(client)
                        else:
                            self._stall(client)
                        return
            except OSError:
                return
            finally:
                for sock in (client, upstream):
                    try:
                        sock.close()
                    except OSError:
                        pass

    def _stall(self, client: socket.socket) -> None:
        """Forward nothing more; keep the connection open until the client gives up (or the limit)."""
        deadline = time.monotonic() + self.stall_limit
        client.settimeout(0.5)
        while time.monotonic() < deadline and not self._closing.is_set():
            try:
                if not client.recv(_CHUNK):  # what the client still sends is swallowed
                    return
            except TimeoutError:
                continue
            except OSError:
                return


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN, as a middlebox that drops the flow does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

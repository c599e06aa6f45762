"""A TCP proxy on loopback that breaks connections the way flaky networks do.

It sits between the engine and a real server and, on some connections (``fault_rate``), either
resets the connection (RST) or silently stalls it (no more data either way, the connection left
open, as a NAT gateway that forgot the flow does) once a random number of bytes has passed in one
direction (``up`` = client to server, below ``up_offsets``; ``down`` = server to client, below
``down_offsets``). Faults are bounded: at most ``max_faults`` in all and none after
``fault_window`` seconds from the start, so a run under the proxy always ends; a stalled connection
is closed after ``stall_limit`` seconds if the client has not given up on it first.

Every connection (unless ``scripted`` places the faults) draws its fate from ``Random(f"{seed}:{n}")`` (``n`` = its order of arrival), so
a failing run can be replayed with the same seed (connections that arrive in a different order
between runs get each other's fates).
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
    #: (connection number, "reset"/"stall", direction, byte offset), in the order they happened.
    faults: list[tuple[int, str, str, int]] = field(default_factory=list)

    @property
    def injected(self) -> int:
        return self.resets + self.stalls


@dataclass(frozen=True, slots=True)
class _Fate:
    kind: str  # "none" | "reset" | "stall"
    direction: str  # "down" (server to client) | "up" (client to server)
    offset: int


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int,
        fault_rate: float = 0.3,
        stall_share: float = 0.5,
        up_share: float = 0.2,
        down_offsets: int = 1_000_000,
        up_offsets: int = 2_000,
        max_faults: int = 20,
        fault_window: float = 60.0,
        stall_limit: float = 30.0,
        scripted: dict[int, tuple[str, str, int]] | None = None,
        master_user: str = "admin",
    ) -> None:
        self.upstream_port = upstream_port
        self.master_user = master_user  # lets a proxy stand in for a server in tests/lab.write_plan
        self.seed = seed
        self.fault_rate = fault_rate
        self.stall_share = stall_share
        self.up_share = up_share
        self.offsets = {"down": down_offsets, "up": up_offsets}
        self.max_faults = max_faults
        self.fault_window = fault_window
        self.stall_limit = stall_limit
        #: Connection number -> (kind, direction, offset): a fault placed by the test, not drawn.
        self.scripted = scripted or {}
        self.log = FaultLog()
        self._lock = threading.Lock()
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
            fate = self._fate(number)
            thread = threading.Thread(
                target=self._serve, args=(client, number, fate), name=f"faultproxy-{number}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _fate(self, number: int) -> _Fate:
        if self.scripted:
            return _Fate(*self.scripted[number]) if number in self.scripted else _Fate("none", "down", 0)
        rng = random.Random(f"{self.seed}:{number}")
        faulty = rng.random() < self.fault_rate
        kind = "stall" if rng.random() < self.stall_share else "reset"
        direction = "up" if rng.random() < self.up_share else "down"
        offset = rng.randrange(self.offsets[direction])
        return _Fate(kind if faulty else "none", direction, offset)

    def _may_fault(self) -> bool:
        """Claim one fault from the budget, unless the budget or the window is used up."""
        with self._lock:
            if self.log.injected >= self.max_faults:
                return False
            return time.monotonic() - self._started < self.fault_window

    def _serve(self, client: socket.socket, number: int, fate: _Fate) -> None:
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
                        before = counted[direction]
                        counted[direction] += len(data)
                        if (
                            fate.kind != "none"
                            and direction == fate.direction
                            and before <= fate.offset < counted[direction]
                            and self._may_fault()
                        ):
                            peer[sock].sendall(data[: fate.offset - before])
                            self._record(number, fate)
                            if fate.kind == "reset":
                                _reset(client)
                                return
                            self._stall(client)
                            return
                        peer[sock].sendall(data)
            except OSError:
                return
            finally:
                for sock in (client, upstream):
                    try:
                        sock.close()
                    except OSError:
                        pass

    def _record(self, number: int, fate: _Fate) -> None:
        with self._lock:
            if fate.kind == "reset":
                self.log.resets += 1
            else:
                self.log.stalls += 1
            self.log.faults.append((number, fate.kind, fate.direction, fate.offset))

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

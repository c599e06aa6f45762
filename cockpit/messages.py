"""Messages the cockpit's widgets exchange."""

from __future__ import annotations

from textual.message import Message

from runners.state.read_models.snapshot import Snapshot


class SnapshotReady(Message):
    """A fresh, immutable view of the state store (posted from the poller thread)."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

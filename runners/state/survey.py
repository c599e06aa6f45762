"""The source survey in the state store: folder sizes the readiness checks measured, which the
engine reuses to start the largest mailboxes first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runners.state.base import StoreBase


@dataclass(frozen=True, slots=True)
class SurveyRow:
    mailbox: str
    folder: str
    messages: int
    bytes: int
    largest: int
    surveyed: float


class SurveyMixin(StoreBase):
    def save_survey(self, rows: Sequence[SurveyRow]) -> None:
        """Replace what was known of these folders."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO survey (mailbox, folder, messages, bytes, largest, surveyed) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (mailbox, folder) DO UPDATE SET messages = excluded.messages, bytes = excluded.bytes, "
                "largest = excluded.largest, surveyed = excluded.surveyed",
                [(r.mailbox, r.folder, r.messages, r.bytes, r.largest, r.surveyed) for r in rows],
            )

    def surveyed_bytes(self) -> dict[str, int]:
        """Each surveyed mailbox's size in bytes (every folder surveyed)."""
        return {m: int(b) for m, b in self._read("SELECT mailbox, SUM(bytes) FROM survey GROUP BY mailbox")}

    def survey_totals(self) -> dict[str, tuple[int, int]]:
        """Each surveyed mailbox's messages and bytes (every folder surveyed): the volume an ETA counts on
        before a pass has listed the mailbox itself."""
        return {
            m: (int(n), int(b))
            for m, n, b in self._read(
                "SELECT mailbox, SUM(messages), SUM(bytes) FROM survey GROUP BY mailbox"
            )
        }

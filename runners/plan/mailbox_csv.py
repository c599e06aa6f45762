"""Read the mailbox list CSV: ``source,target,wave[,source_password,target_password,address]``.

The header row is required and case-insensitive; a UTF-8 BOM (Excel) and blank lines are fine.
Password cells are secret references and are never echoed in an error.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from runners.errors import PlanError
from runners.plan.model import MailboxEntry, Secret
from runners.plan.paths import make_secret
from runners.plan.tables import did_you_mean

REQUIRED_COLUMNS = ("source", "target", "wave")
PASSWORD_COLUMNS = ("source_password", "target_password")
#: The mailbox's mail address when ``source`` is a login that isn't one (``jsmith``).
ADDRESS_COLUMN = "address"
COLUMNS = REQUIRED_COLUMNS + PASSWORD_COLUMNS + (ADDRESS_COLUMN,)


@dataclass(frozen=True, slots=True)
class Row:
    """One mailbox and where it was written (a CSV line or an ``entries`` item of the plan)."""

    entry: MailboxEntry
    path: str
    line: int | None
    #: Prepended to a column name to make the error key: "" in a CSV, "mailboxes.entries[2]." inline.
    key_prefix: str = ""

    def error(self, column: str, message: str) -> PlanError:
        return PlanError(self.path, self.line, self.key_prefix + column, message)


class CellError(Exception):
    """A bad value in one column; the caller knows the file and line."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def make_entry(values: dict[str, str], base_dir: Path, origin: str) -> MailboxEntry:
    """A ``MailboxEntry`` from cell values; raises ``CellError`` on a bad cell."""
    for column in REQUIRED_COLUMNS:
        value = values.get(column, "").strip()
        if not value:
            raise CellError(column, f"{column} is empty")
        if column == "wave":
            # Wave names are labels ("Wave 1" is fine) but must fit on one line in reports.
            if not value.isprintable():
                raise CellError(column, "wave contains a line break or control character")
        elif any(c.isspace() for c in value):
            raise CellError(column, f'{column} "{value}" contains spaces')
    secrets: dict[str, Secret | None] = {}
    for column in PASSWORD_COLUMNS:
        ref = values.get(column, "")
        try:
            secrets[column] = make_secret(ref, base_dir) if ref.strip() else None
        except ValueError as exc:
            raise CellError(column, str(exc)) from None
    return MailboxEntry(
        source=values["source"].strip(),
        target=values["target"].strip(),
        wave=values["wave"].strip(),
        source_password=secrets["source_password"],
        target_password=secrets["target_password"],
        origin=origin,
        address=_address(values.get(ADDRESS_COLUMN, "")),
    )


def _address(value: str) -> str | None:
    """An empty cell: no address given (the login may be one). Else it must look like one."""
    address = value.strip()
    if not address:
        return None
    if any(c.isspace() for c in address) or address.count("@") != 1 or address.startswith("@"):
        raise CellError(ADDRESS_COLUMN, f'address "{address}" is not a mail address (name@domain)')
    return address


def read_mailbox_csv(path: Path, shown_as: str, base_dir: Path) -> list[Row]:
    """Rows of the CSV at ``path``; errors name it as ``shown_as`` with the row's line.

    Raises FileNotFoundError / OSError when the file can't be opened (the caller knows which plan
    key pointed at it), PlanError for anything wrong inside it.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PlanError(shown_as, line, None, "is not valid UTF-8 (save it as CSV UTF-8)") from None

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: list[str] | None = None
    rows: list[Row] = []
    end_of_previous = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise PlanError(shown_as, reader.line_num, None, f"is not valid CSV: {exc}") from None
        # A quoted cell may span lines; the row starts right after the previous one ended.
        line = end_of_previous + 1
        end_of_previous = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if columns is None:
            columns = _header(cells, shown_as, line)
            continue
        if len(cells) != len(columns):
            raise PlanError(
                shown_as, line, None, f"row has {len(cells)} cells but the header has {len(columns)}"
            )
        row_values = dict(zip(columns, cells, strict=True))
        origin = f"{shown_as}:{line}"
        try:
            entry = make_entry(row_values, base_dir, origin)
        except CellError as exc:
            raise PlanError(shown_as, line, exc.column, exc.message) from None
        rows.append(Row(entry, shown_as, line))

    if columns is None:
        raise PlanError(shown_as, None, None, "is empty; it needs a header row: source,target,wave")
    return rows


def _header(cells: list[str], shown_as: str, line: int) -> list[str]:
    columns = [cell.strip().lower() for cell in cells]
    if any("@" in column for column in columns):
        raise PlanError(shown_as, line, None, "the first row must be the header: source,target,wave")
    seen: set[str] = set()
    for column in columns:
        if column not in COLUMNS:
            hint = did_you_mean(column, COLUMNS) if column else ""
            name = f'"{column}"' if column else "an empty column name"
            known = ", ".join(COLUMNS)
            raise PlanError(
                shown_as, line, column or None, f"unknown column {name}{hint}; columns are {known}"
            )
        if column in seen:
            raise PlanError(shown_as, line, column, f'column "{column}" appears twice')
        seen.add(column)
    for column in REQUIRED_COLUMNS:
        if column not in seen:
            raise PlanError(
                shown_as,
                line,
                column,
                f'the header has no "{column}" column (it must be source,target,wave)',
            )
    return columns

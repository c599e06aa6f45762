"""The ``[mailboxes]`` table: a CSV file and/or inline ``entries``, checked as one list."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from runners.plan.locate import Key
from runners.plan.mailbox_csv import (
    ADDRESS_COLUMN,
    COLUMNS,
    PASSWORD_COLUMNS,
    CellError,
    Row,
    make_entry,
    read_mailbox_csv,
)
from runners.plan.model import Endpoint, MailboxEntry
from runners.plan.paths import resolve_path
from runners.plan.tables import Table, format_key, type_name

MAILBOXES_KEYS = ("csv", "entries")


def load_mailboxes(
    table: Table,
    base_dir: Path,
    source: Endpoint,
    target: Endpoint,
    elsewhere: Mapping[str, str] | None = None,
) -> tuple[MailboxEntry, ...]:
    table.check_keys(MAILBOXES_KEYS, elsewhere)
    if "csv" not in table and "entries" not in table:
        raise table.error(None, '[mailboxes] needs csv = "mailboxes.csv" or entries = [ ... ]')
    rows = _csv_rows(table, base_dir) + _inline_rows(table, base_dir)
    if not rows:
        raise table.error(None, "lists no mailboxes")
    _check_unique(rows)
    _check_passwords(rows, "source", source)
    _check_passwords(rows, "target", target)
    return tuple(row.entry for row in rows)


def _csv_rows(table: Table, base_dir: Path) -> list[Row]:
    value = table.string("csv")
    if value is None:
        return []
    # Shown the way the operator would find it from where they ran the command.
    shown = str(Path(table.doc.path).parent / Path(value).expanduser())
    try:
        return read_mailbox_csv(resolve_path(base_dir, value), shown, base_dir)
    except FileNotFoundError:
        raise table.error("csv", f"mailbox list {shown} not found") from None
    except OSError as exc:
        raise table.error("csv", f"mailbox list {shown} can't be read: {exc.strerror}") from None


def _inline_rows(table: Table, base_dir: Path) -> list[Row]:
    items = table.array("entries")
    if items is None:
        return []
    rows: list[Row] = []
    for index, item in enumerate(items):
        key: Key = (*table.key, "entries", index)
        if not isinstance(item, dict):
            shape = '{ source = "...", target = "...", wave = "..." }'
            raise table.doc.error(key, f"expected a table {shape}, got {type_name(item)}")
        entry_table = Table(table.doc, key, item)
        entry_table.check_keys(COLUMNS)
        values: dict[str, str] = {}
        for column in COLUMNS:
            if column in PASSWORD_COLUMNS:
                value = entry_table.secret_ref(column)
            elif column == ADDRESS_COLUMN:
                value = entry_table.string(column)
            else:
                value = entry_table.required_string(column)
            if value is not None:
                values[column] = value
        line = table.doc.locator.line_of(key)
        try:
            entry = make_entry(values, base_dir, f"{table.doc.path}:{line}")
        except CellError as exc:
            raise entry_table.error(exc.column, exc.message) from None
        rows.append(Row(entry, table.doc.path, line, format_key(key) + "."))
    return rows


def _check_unique(rows: list[Row]) -> None:
    """One row per source, target and address: two rows into one mailbox would interleave copies."""
    for column in ("source", "target", ADDRESS_COLUMN):
        seen: dict[str, Row] = {}
        for row in rows:
            address: str | None = getattr(row.entry, column)
            if address is None:
                continue
            # Mail systems treat addresses case-insensitively, so Bob@x and bob@x are one mailbox.
            first = seen.setdefault(address.casefold(), row)
            if first is not row:
                raise row.error(
                    column,
                    f'{column} "{address}" is listed twice: {first.entry.origin} and {row.entry.origin}',
                )


def _check_passwords(rows: list[Row], side: str, endpoint: Endpoint) -> None:
    """auth = "password" needs a password for every mailbox: a default one or a per-row one (a Graph
    target signs in as the app, never as the user)."""
    if endpoint.type in ("maildir", "graph") or endpoint.auth != "password" or endpoint.password is not None:
        return
    column = f"{side}_password"
    for row in rows:
        if getattr(row.entry, column) is None:
            raise row.error(
                column,
                f'[{side}] uses auth = "password" with no default password, '
                f"so every mailbox needs a {column}",
            )

"""The state directory and its files are private to the account that runs the migration.

They hold addresses, folder names, servers' texts and the directory's DNs, so they are created
``0700`` (directories) and ``0600`` (files) whatever the umask. SQLite gives a database's ``-wal``
and ``-shm`` the mode of the database file, so creating ``state.db`` ``0600`` first covers them.
What exists already is left as the operator set it (a group that may read the state for
``cutover status`` is a choice, not an accident).
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents ``0700``; an existing directory keeps its mode."""
    missing = []
    for directory in (path, *path.parents):
        if directory.exists():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process created it at the same moment: its mode is its creator's
        os.chmod(directory, DIR_MODE)  # mkdir's mode passes through the umask
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` (and its directory) ``0600`` if it doesn't exist yet; never truncates it."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all: through a fresh private temporary file, then renamed (a reader
    never sees half of it; a stale temporary file from a crash doesn't lend its mode)."""
    temp = path.with_name(path.name + ".tmp")
    temp.unlink(missing_ok=True)
    private_file(temp)
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)

"""Courier-IMAP's keywords for one Maildir++ folder, read from its ``courierimapkeywords/`` directory
(never written).

Courier keeps them apart from the file names (Dovecot's ``a``-``z`` letters are not used):

* ``:list`` names the keywords, one a line, up to an empty line; then one line a message,
  ``<base name>:<index> <index> ...``, the indexes counting from 0 in that list.
* A change since the last merge is a file of its own, holding the message's whole keyword list
  (one a line; empty when they were all removed): ``.<N>.<base name>``, where the highest ``N`` is
  the newest, or ``<base name>``, newer than any numbered one. Courier merges them into ``:list``
  when it next reads the folder. ``.tmp.`` files are being written: not yet a change.

A name with a space or a control character (only a tool or a hand writes one) is left out: it can't
be a flag (``runners.model.storable_keyword``).

A change file that vanishes while it is read was merged meanwhile: the whole read starts again
(as Courier's own reader does), so a message never shows keywords older than ``:list`` holds.
"""

from __future__ import annotations

import os

from runners.model import storable_keyword

KEYWORDS_DIR = "courierimapkeywords"
_LIST = ":list"
_TRIES = 3


def read_courier_keywords(folder_dir: str) -> dict[str, tuple[str, ...]]:
    """Base name -> its keywords, for the messages that have any; empty when the folder has none."""
    directory = os.path.join(folder_dir, KEYWORDS_DIR)
    for _ in range(_TRIES):
        found = _read_list(os.path.join(directory, _LIST))
        try:
            for base, name in _changes(directory).items():
                keywords = _read_change(os.path.join(directory, name))
                if keywords is None:
                    continue  # unreadable: what :list says stands
                if keywords:
                    found[base] = keywords
                else:
                    found.pop(base, None)
        except FileNotFoundError:
            continue  # merged into :list while we read: read it again
        return found
    return found


def _read_list(path: str) -> dict[str, tuple[str, ...]]:
    try:
        with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
            lines = fh.read().split("\n")
    except OSError:
        return {}
    names: list[str] = []
    at = 0
    while at < len(lines) and lines[at]:
        names.append(lines[at])
        at += 1
    found: dict[str, tuple[str, ...]] = {}
    for line in lines[at + 1 :]:
        base, colon, indexes = line.partition(":")
        if not colon or not base:
            continue  # a broken line: Courier skips it too
        keywords = [
            names[int(i)]
            for i in indexes.split()
            if i.isdigit() and int(i) < len(names) and storable_keyword(names[int(i)])
        ]
        if keywords:
            found[base] = tuple(dict.fromkeys(keywords))
    return found


def _changes(directory: str) -> dict[str, str]:
    """Base name -> the file holding its newest change."""
    newest: dict[str, tuple[int, str]] = {}
    try:
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries]
    except OSError:
        return {}
    for name in names:
        if name.startswith(":"):
            continue
        if not name.startswith("."):
            newest[name] = (-1, name)  # a plain name is newer than any numbered change
            continue
        number, dot, base = name[1:].partition(".")
        if not dot or not base or not number.isdigit():
            continue  # ".tmp.<...>": being written
        rank = int(number)
        held = newest.get(base)
        if held is None or (held[0] >= 0 and rank > held[0]):
            newest[base] = (rank, name)
    return {base: name for base, (_, name) in newest.items()}


def _read_change(path: str) -> tuple[str, ...] | None:
    """A change's keywords; None when it can't be read (FileNotFoundError is the caller's)."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
            lines = fh.read().split("\n")
    except FileNotFoundError:
        raise
    except OSError:
        return None
    keywords: list[str] = []
    for line in lines:
        if not line:
            break
        if storable_keyword(line):
            keywords.append(line)
    return tuple(dict.fromkeys(keywords))

"""Text from outside (servers, directories, DNS, files), made safe to print, log, store and draw.

Pure functions and one process-wide set of known secrets; no imports of the product, so every layer
can use it. Two dangers, one module:

* **Control characters.** A folder name or a server's error text may carry ``ESC ] 0 ; title BEL``
  (retitles the terminal or tmux pane), ``ESC ] 52 ; c ; ... BEL`` (writes the clipboard), ``ESC [ 2 J``
  (blanks the screen) or ``CR LF`` (forges a line in a log that someone follows with ``tail -f``).
  ``visible`` shows each of them instead of obeying it: C0 controls as their Unicode control
  pictures (``ESC`` as ``␛``, ``CR LF`` as ``␍␊``), DEL as ``␡``, C1 controls, line and paragraph
  separators and bidirectional overrides as ``�``. The result is always one line.
* **Secrets.** A server that echoes the login (``NO [AUTHENTICATIONFAILED] ... LOGIN "u" "pw"``) would
  put the password wherever its words go. Every secret the plan reveals is registered here
  (``runners.plan.secret``), and ``scrub`` replaces each one (and its IMAP-quoted spelling) with
  ``********``. ``safe`` does both; the error classes apply it to a server's words when they are
  built, so everything downstream (store, logs, screens) only ever sees the safe text.

And a third, smaller one: a name from the plan (a wave) that becomes part of a file name goes through
``file_name_part``, so that ``x/../../../EVIL`` can't steer a path out of the state directory.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
import threading
from typing import Any

#: What a secret turns into.
MASK = "********"
#: Shorter "secrets" would blank out ordinary words of a server's text; such a password is weak anyway.
SHORTEST_SCRUBBED = 4

_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)} | {0x7F: "\u2421"}
_REPLACED = "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
_CONTROL = re.compile(_REPLACED)
_CONTROL_BUT_NEWLINE = re.compile(_REPLACED.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))

_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_FILE_NAME_MAX = 64

_secrets: tuple[str, ...] = ()  # longest first: a secret inside another one leaves nothing behind
_known: set[str] = set()
_ordered: list[str] = []
_secrets_lock = threading.Lock()


def _picture(match: re.Match[str]) -> str:
    return _PICTURES.get(ord(match.group(0)), "\ufffd")


def visible(text: str) -> str:
    """``text`` as one line in which no character can act on a terminal: each control is shown."""
    if text.isprintable():  # the common case, and cheap: every character replaced here is unprintable
        return text
    return _CONTROL.sub(_picture, text)


def visible_lines(text: str) -> str:
    """Like ``visible`` but keeps ``\\n``: for a block of our own lines (a report, a traceback)."""
    return _CONTROL_BUT_NEWLINE.sub(_picture, text)


def register_secret(value: str) -> None:
    """Remember a revealed secret so that ``scrub`` keeps it out of every text from outside."""
    if len(value) < SHORTEST_SCRUBBED:
        return
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')  # as an IMAP quoted string carries it
    global _secrets
    with _secrets_lock:
        fresh = [v for v in dict.fromkeys((value, quoted)) if v not in _known]
        if not fresh:
            return  # the common case: the same password revealed for the next session
        for v in fresh:
            _known.add(v)
            bisect.insort(_ordered, v, key=lambda s: -len(s))  # O(n) per new secret, not a sort
        _secrets = tuple(_ordered)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``MASK``."""
    for secret in _secrets:  # a tuple, replaced whole on registration: no lock needed to read it
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def safe(text: object) -> str:
    """Text from outside, ready to print, log, store or draw: no secret, no control, one line."""
    # ``visible(scrub(str(text)))`` inlined: the proxy's journal calls this for five or six columns
    # of every login, and the two calls were most of its cost for the usual short printable text.
    if type(text) is not str:
        text = str(text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if text.isprintable():
        return text
    return _CONTROL.sub(_picture, text)


def safe_lines(text: object) -> str:
    """Like ``safe`` for a multi-line block we composed: keeps ``\\n`` (a folder name's CR LF is shown)."""
    return visible_lines(scrub(str(text)))


def safe_data(data: Any) -> Any:
    """``data`` (JSON-like: dicts, lists, tuples) with ``safe`` applied to every string in it."""
    if isinstance(data, str):
        return safe(data)
    if isinstance(data, dict):
        return {key: safe_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [safe_data(value) for value in data]
    return data


def safe_or_none(text: str | None) -> str | None:
    """``safe`` for an optional text (a column that may be NULL)."""
    return None if text is None else safe(text)


class SafeFormatter(logging.Formatter):
    """A log formatter for files people follow with ``tail -f``: a message is one safe line (a folder
    name's CR LF can't forge a line, an escape sequence can't reach the terminal), and a traceback
    keeps its lines but shows every other control."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = safe(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return safe_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return safe_lines(super().formatStack(stack_info))


def file_name_part(name: str) -> str:
    """``name`` (a wave, from the plan) as one harmless component of a file name.

    Only letters, digits, ``.``, ``_`` and ``-`` are kept, other runs become ``_``, a leading dot is
    dropped (no ``..``, no hidden file) and the length is capped. A name that had to change gets a
    short digest of the original, so that two different waves never share a file.
    """
    part = _UNSAFE_IN_FILE_NAME.sub("_", name).lstrip(".")[:_FILE_NAME_MAX] or "_"
    if part == name:
        return part
    return f"{part}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


#: Characters Markdown (and GitHub's tables) give a meaning to: backslash-escaped in a cell.
_MD_META = re.compile(r"([\\`*_\[\]|~#<>!])")


def markdown_literal(text: object) -> str:
    """Outside text as literal Markdown (a report's cell or line): ``safe`` first, then ``<`` ``>`` ``&``
    as entities (no raw HTML) and every metacharacter behind a backslash (no emphasis, link, cell
    break; a line's leading ``#`` can't start a heading). Always one line."""
    import html  # reports only: html.entities is not loaded by every command's start

    escaped = html.escape(safe(text), quote=False)
    return _MD_META.sub(r"\\\1", escaped)

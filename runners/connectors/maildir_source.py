"""Maildir++ source: reads a Dovecot or Courier maildir tree straight from the filesystem.

Layout (both servers): the root's ``cur/new/tmp`` are INBOX, every folder is a directory
``.Name.Sub`` directly under the root (separator ``.``). Dovecot writes non-ASCII names in
modified UTF-7; Courier does too (and shows the folders as ``INBOX.Name.Sub``). ``FolderInfo.path``
is always the hierarchy without any ``INBOX.`` prefix, ``raw_name`` the directory name (``INBOX``
for the root). A ``.A.B`` without ``.A`` lists A as non-selectable, as IMAP does. Dovecot's
``LAYOUT=fs`` and other non-Maildir++ layouts are not read.

Identity and order:

* ``MessageMeta.key`` is the file's base name (the part before ``:``). It never changes while the
  message exists (flag changes only rename the ``:2,`` part), with or without a UID list.
* ``uid`` only orders messages. When the folder has a UID list (``dovecot-uidlist``, or
  ``courierimapuiddb`` for the Courier layout), listed files get their IMAP UID and unlisted ones
  (delivered since the server last looked) follow from the list's next UID on, by base name.
  Without a list, ``uid`` is the position in base-name order (base names start with the
  delivery time).
* ``uidvalidity`` is a stable CRC-32 of the folder path, never the UID list's: keys are base names,
  which survive the server creating or rebuilding its UID list (Dovecot creates it at the first
  IMAP/POP3 login), and a UIDVALIDITY that changed then would only force a needless full recopy.

Flags come from the ``:2,<letters>`` info: D F P R S T map to \\Draft, \\Flagged, $Forwarded,
\\Answered, \\Seen, \\Deleted; ``a``-``z`` are Dovecot keywords named by the folder's
``dovecot-keywords`` file (letters are ignored when the file is missing). The Courier layout
keeps its keywords in ``courierimapkeywords/`` instead (``runners.connectors.courier_keywords``).
Files in ``new/`` carry no info: unseen.

Change detection (``folder_states``) is one scandir of ``cur`` + ``new``: ``messages`` is the file
count and ``uidnext`` the UID list's next UID (else count + 1). It notices deliveries and expunges
but not flag changes, nor an expunge plus a delivery between two passes in a folder without a UID
list; relist when that matters. INTERNALDATE is the file's mtime (Dovecot's own convention), in
UTC.

Bodies are returned as an IMAP server would serve this Maildir: byte for byte, except that bare
LF line endings (how Dovecot and Courier store mail) become CRLF, as RFC 5322 and IMAP require.
Without that, what we copy would differ from what the same server shows its users over IMAP, and
the engine's SHA-256 matching against the target (which serves CRLF) could never match.
``MessageMeta.size`` is therefore the CRLF size: the ``,W=`` field when present.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from runners.connectors.base import LeftOff, SourceSession
from runners.connectors.courier_keywords import read_courier_keywords
from runners.errors import CommandError, ConnectError
from runners.folders import decode_segment
from runners.imap.dates import format_date_time
from runners.model import FetchedMessage, FetchFailure, FolderInfo, FolderState, MessageMeta, storable_keyword
from runners.plan.model import Endpoint, MailboxEntry

MaildirLayout = Literal["dovecot", "courier"]

INBOX = "INBOX"
_SEPARATOR = "."
_SYSTEM_LETTERS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
_UIDLIST_FILE: dict[str, str] = {"dovecot": "dovecot-uidlist", "courier": "courierimapuiddb"}
_KEYWORDS_FILE = "dovecot-keywords"


class UidList(NamedTuple):
    """What a ``dovecot-uidlist`` (v3) or ``courierimapuiddb`` (v1) file says."""

    uidvalidity: int
    nextuid: int
    uids: dict[str, int]  # base name -> UID


class _File(NamedTuple):
    path: str
    stored_size: int  # ",S=" from the name, -1 without it


def open_session(endpoint: Endpoint, entry: MailboxEntry) -> SourceSession:
    """The source session for one mailbox of a plan (``runners.adapters`` names this opener)."""
    assert endpoint.path is not None
    return open_maildir_source(Path(endpoint.path.replace("{user}", entry.source)), endpoint.maildir_layout)


def open_maildir_source(root: Path, layout: MaildirLayout = "dovecot") -> MaildirSource:
    """Open the maildir at ``root``; raises ConnectError when it isn't a readable maildir."""
    if layout not in _UIDLIST_FILE:
        raise ValueError(f"unknown maildir layout {layout!r}")
    server = f"maildir:{root}"
    try:
        if not os.path.isdir(os.path.join(root, "cur")):
            os.stat(root)  # raises the precise error when the root itself is missing
            raise NotADirectoryError(f"{root} has no cur/ directory: not a maildir")
    except OSError as exc:
        raise ConnectError(server, "open", str(exc)) from None
    return MaildirSource(root, layout)


class MaildirSource:
    """A :class:`runners.connectors.base.SourceSession` over a Maildir++ tree. Never writes to it."""

    def __init__(self, root: Path, layout: MaildirLayout) -> None:
        self.root = str(root)
        self.layout = layout
        self.server = f"maildir:{root}"
        # raw_name -> key -> file, from the last listing; lets fetch open files without a scan.
        self._files: dict[str, dict[str, _File]] = {}
        # raw_name -> what the last listing found and no copy carries (``listing_notes``).
        self._notes: dict[str, list[LeftOff]] = {}

    # -- folders ---------------------------------------------------------------------------

    def list_folders(self) -> list[FolderInfo]:
        try:
            with os.scandir(self.root) as it:
                names = [e.name for e in it if e.name.startswith(_SEPARATOR) and _is_maildir(e.path)]
        except OSError as exc:
            raise CommandError(self.server, "list folders", str(exc)) from None
        found: dict[str, FolderInfo] = {}
        for raw_name in names:
            found[raw_name] = FolderInfo(raw_name, _maildir_path(raw_name), _SEPARATOR)
        # A ".A.B" without ".A": list A as a non-selectable parent, as IMAP would.
        paths = {info.path for info in found.values()}
        for info in list(found.values()):
            raw_parts = [p for p in info.raw_name[1:].split(_SEPARATOR) if p]
            for depth in range(1, len(info.path)):
                parent = info.path[:depth]
                if parent not in paths:
                    paths.add(parent)
                    raw = _SEPARATOR + _SEPARATOR.join(raw_parts[:depth])
                    found.setdefault(raw, FolderInfo(raw, parent, _SEPARATOR, selectable=False))
        inbox = FolderInfo(INBOX, (INBOX,), _SEPARATOR)
        return [inbox, *sorted(found.values(), key=lambda f: (f.path, f.raw_name))]

    def folder_states(self, folders: Sequence[FolderInfo]) -> dict[str, FolderState | Exception]:
        states: dict[str, FolderState | Exception] = {}
        for folder in folders:
            try:
                states[folder.raw_name] = self._state(folder)
            except CommandError as exc:
                states[folder.raw_name] = exc
        return states

    def _state(self, folder: FolderInfo) -> FolderState:
        fdir = self._dir(folder)
        count = 0
        for sub in ("cur", "new"):
            try:
                with os.scandir(os.path.join(fdir, sub)) as it:
                    count += sum(1 for e in it if not e.name.startswith("."))
            except OSError as exc:
                raise self._list_error(folder, exc) from None
        uidlist = self._read_uidlist(fdir, header_only=True)
        uidnext = uidlist.nextuid if uidlist is not None else count + 1
        return FolderState(_folder_uidvalidity(folder), uidnext, count)

    # -- messages --------------------------------------------------------------------------

    def list_messages(self, folder: FolderInfo) -> tuple[FolderState, list[MessageMeta]]:
        fdir = self._dir(folder)
        entries = self._scan(folder, fdir)
        uidlist = self._read_uidlist(fdir, header_only=False)
        names = _read_keywords(fdir) if self.layout == "dovecot" else None
        keywords = names.usable if names is not None else {}
        courier = read_courier_keywords(fdir) if self.layout == "courier" else {}
        ordered = _order(entries, uidlist)

        flag_cache: dict[str, tuple[tuple[str, ...], str]] = {}
        unnamed: dict[str, list[int]] = {}  # letters no keyword name is kept for -> UIDs
        files: dict[str, _File] = {}
        metas: list[MessageMeta] = []
        for uid, base, entry in ordered:
            name = entry.name
            info = name[len(base) + 1 :]
            cached = flag_cache.get(info)
            if cached is None:
                cached = flag_cache[info] = _flags(info, keywords)
            flags, lost = cached
            if lost:
                unnamed.setdefault(lost, []).append(uid)
            if courier and base in courier:
                flags = tuple(dict.fromkeys(flags + courier[base]))
            stored = _stored_size(base)
            virtual = _size_field(base, ",W=")
            try:
                st = entry.stat()
            except OSError:
                # Dangling link and the like: list it anyway so fetch reports the OS's words.
                size, internaldate = max(stored, 0), None
            else:
                size = virtual if virtual >= 0 else (stored if stored >= 0 else st.st_size)
                internaldate = imap_utc_date(st.st_mtime)
            files[base] = _File(entry.path, stored)
            metas.append(MessageMeta(base, uid, size, flags, internaldate))
        self._files[folder.raw_name] = files
        self._notes[folder.raw_name] = _unnamed_notes(unnamed, names) if names is not None else []

        uidnext = uidlist.nextuid if uidlist is not None else len(metas) + 1
        return FolderState(_folder_uidvalidity(folder), uidnext, len(metas)), metas

    def fetch(
        self, folder: FolderInfo, metas: Sequence[MessageMeta]
    ) -> Iterator[FetchedMessage | FetchFailure]:
        files = self._files.get(folder.raw_name)
        scan_error = ""
        rescanned = files is None
        if files is None:
            files, scan_error = self._rescan(folder)
        for meta in metas:
            outcome, vanished = _read(meta, files.get(meta.key), folder, scan_error)
            if vanished and not rescanned:
                # Renamed (flags changed) or expunged since the listing: look again, once per call.
                files, scan_error = self._rescan(folder)
                rescanned = True
                outcome, _ = _read(meta, files.get(meta.key), folder, scan_error)
            yield outcome

    def isolate(self, uids: Collection[int]) -> None:
        """Files are read one by one anyway, and reading one never breaks a connection."""

    def listing_notes(self, folder: FolderInfo) -> list[LeftOff]:
        """What the last listing of ``folder`` found and no copy carries (``base.NotingSource``)."""
        return self._notes.get(folder.raw_name, [])

    def close(self) -> None:
        self._files.clear()
        self._notes.clear()

    # -- helpers ---------------------------------------------------------------------------

    def _dir(self, folder: FolderInfo) -> str:
        if folder.raw_name == INBOX:
            return self.root
        return os.path.join(self.root, folder.raw_name)

    def _list_error(self, folder: FolderInfo, exc: OSError) -> CommandError:
        return CommandError(self.server, f"list {folder.raw_name}", str(exc))

    def _scan(self, folder: FolderInfo, fdir: str) -> list[os.DirEntry[str]]:
        entries: list[os.DirEntry[str]] = []
        for sub in ("cur", "new"):
            try:
                with os.scandir(os.path.join(fdir, sub)) as it:
                    entries.extend(e for e in it if not e.name.startswith("."))
            except OSError as exc:
                raise self._list_error(folder, exc) from None
        return entries

    def _rescan(self, folder: FolderInfo) -> tuple[dict[str, _File], str]:
        """Names only (no stat): enough to find files again. Returns the error text on failure."""
        try:
            entries = self._scan(folder, self._dir(folder))
        except CommandError as exc:
            return {}, exc.server_text
        files: dict[str, _File] = {}
        for e in entries:
            base = e.name.partition(":")[0]
            files[base] = _File(e.path, _stored_size(base))
        self._files[folder.raw_name] = files
        return files, ""

    def _read_uidlist(self, fdir: str, *, header_only: bool) -> UidList | None:
        path = os.path.join(fdir, _UIDLIST_FILE[self.layout])
        try:
            with open(path, "rb") as fh:
                data = fh.readline() if header_only else fh.read()
        except OSError:
            return None  # no list (or unreadable): fall back to base-name order
        return parse_uidlist(data)

    def header_block(
        self, *, folder: str, uid: int, key: str, uidvalidity: int, fields: Sequence[str]
    ) -> bytes | str:
        """The beginning of the file whose base name is the ledger's key, up to its first blank line."""
        if folder == INBOX:
            fdir = self.root
        elif folder.startswith(".") and folder != ".." and os.sep not in folder:
            fdir = os.path.join(self.root, folder)  # Maildir++: ".Sent", ".Archive.2023"
        else:
            return f"{folder!r} is not a Maildir++ folder name"
        for sub in ("cur", "new"):
            directory = os.path.join(fdir, sub)
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                if name.partition(":")[0] == key:
                    return self._head_of(os.path.join(directory, name))
        return f"{key} is no longer in {fdir} (expunged or moved since the run?)"

    @staticmethod
    def _head_of(path: str, limit: int = 256 * 1024) -> bytes:
        """The file's beginning, up to its first blank line (or ``limit`` bytes)."""
        with open(path, "rb") as fh:
            data = b""
            while len(data) < limit:
                chunk = fh.read(16 * 1024)
                if not chunk:
                    break
                data += chunk
                if b"\n\n" in data or b"\n\r\n" in data:
                    break
        return data


def parse_uidlist(data: bytes) -> UidList | None:
    """Parse a Dovecot v3 (``3 V<uidv> N<next> ...`` / ``<uid> [ext ...] :<file>``) or v1
    (``1 <uidv> <next>`` / ``<uid> <file>``, Courier's format) UID list. None when unrecognised."""
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    if not lines:
        return None
    head = lines[0].split()
    try:
        if head[0] == "3":
            fields = {f[0]: f[1:] for f in head[1:] if f}
            uidvalidity, nextuid = int(fields["V"]), int(fields["N"])
        elif head[0] == "1" and len(head) >= 3:
            uidvalidity, nextuid = int(head[1]), int(head[2])
        else:
            return None
    except (KeyError, ValueError, IndexError):
        return None
    v3 = head[0] == "3"
    uids: dict[str, int] = {}
    for line in lines[1:]:
        uid_text, _, rest = line.partition(" ")
        if not uid_text.isdigit():
            continue
        if v3:  # extension fields, then ":" and the last known file name
            if rest.startswith(":"):
                rest = rest[1:]
            else:
                cut = rest.find(" :")
                if cut < 0:
                    continue
                rest = rest[cut + 2 :]
        uids[rest.partition(":")[0]] = int(uid_text)
    return UidList(uidvalidity, nextuid, uids)


def imap_utc_date(timestamp: float) -> str:
    """A file time as an IMAP date-time in UTC."""
    return format_date_time(datetime.fromtimestamp(timestamp, UTC))


def _read(
    meta: MessageMeta, file: _File | None, folder: FolderInfo, scan_error: str
) -> tuple[FetchedMessage | FetchFailure, bool]:
    """Read one message. The flag says the file wasn't found (worth one rescan)."""
    if file is None:
        return FetchFailure(meta, scan_error or f"{meta.key} is no longer in {folder.raw_name}"), True
    try:
        with open(file.path, "rb") as fh:
            body = fh.read()
    except FileNotFoundError as exc:
        return FetchFailure(meta, str(exc)), True
    except OSError as exc:
        return FetchFailure(meta, str(exc)), False
    if 0 <= file.stored_size != len(body):
        reason = (
            f"size mismatch: file name says S={file.stored_size}, file has {len(body)} bytes ({file.path})"
        )
        return FetchFailure(meta, reason), False
    return FetchedMessage(meta, to_crlf(body)), False


def to_crlf(body: bytes) -> bytes:
    """Bare LF → CRLF, leaving existing CRLF alone (both steps run in C)."""
    if body.count(b"\n") == body.count(b"\r\n"):
        return body
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _maildir_path(raw_name: str) -> tuple[str, ...]:
    """A folder directory's hierarchy (``.Archive.2023`` -> ``(Archive, 2023)``): modified UTF-7 when
    ASCII, a UTF-8 name as it is (it isn't valid mUTF-7). Empty name parts (``..x``, ``.a..b``) are
    left out, as an IMAP source's are (``folders.source_path``): no IMAP target takes an empty name,
    and the folder's messages are still copied (to ``x``, ``a/b``: beside a folder of that name, if
    any). A name of nothing but dots becomes one part, its dots as ``_``."""
    parts = [decode_segment(p) for p in raw_name[1:].split(_SEPARATOR) if p]
    return tuple(parts) if parts else (raw_name[1:].replace(_SEPARATOR, "_"),)


def _is_maildir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "cur"))


def _folder_uidvalidity(folder: FolderInfo) -> int:
    # Stable for the folder's path; never 0, which IMAP reserves.
    return zlib.crc32("/".join(folder.path).encode("utf-8")) or 1


class _KeywordNames(NamedTuple):
    """What a folder's ``dovecot-keywords`` names."""

    #: Letter -> keyword, for the names a flag can hold.
    usable: dict[str, str]
    #: Letter -> name, for names with a space or control character (``storable_keyword``).
    unusable: dict[str, str]
    #: The file could not be read (missing, most often): no letter has a name.
    missing: bool


def _read_keywords(fdir: str) -> _KeywordNames:
    """Letter -> keyword from ``dovecot-keywords`` (``0 $Junk`` means ``a`` = $Junk)."""
    try:
        with open(os.path.join(fdir, _KEYWORDS_FILE), encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return _KeywordNames({}, {}, missing=True)
    usable: dict[str, str] = {}
    unusable: dict[str, str] = {}
    for line in lines:
        index, _, name = line.partition(" ")
        if index.isdigit() and int(index) < 26 and name:
            letter = chr(ord("a") + int(index))
            (usable if storable_keyword(name) else unusable)[letter] = name
    return _KeywordNames(usable, unusable, missing=False)


def _flags(info: str, keywords: dict[str, str]) -> tuple[tuple[str, ...], str]:
    """Flags from the info after ``:`` (``2,FSa``; Dovecot may append ``,<extra>``), and the
    keyword letters among them that ``keywords`` has no name for."""
    if not info.startswith("2,"):
        return (), ""
    letters = info[2:].partition(",")[0]
    flags: dict[str, None] = {}
    lost = ""
    for letter in letters:
        flag = _SYSTEM_LETTERS.get(letter) or keywords.get(letter)
        if flag is not None:
            flags[flag] = None
        elif "a" <= letter <= "z" and letter not in lost:
            lost += letter
    return tuple(flags), lost


def _unnamed_notes(unnamed: dict[str, list[int]], names: _KeywordNames) -> list[LeftOff]:
    """Each keyword letter that no flag can carry, why, and the messages with it.

    Dovecot itself shows such a letter to no client (it has no name, or a name no flag can
    hold), so the copy goes without it; the engine records that it did."""
    by_letter: dict[str, list[int]] = {}
    for letters, uids in unnamed.items():
        for letter in letters:
            by_letter.setdefault(letter, []).extend(uids)
    notes: list[LeftOff] = []
    for letter in sorted(by_letter):
        if letter in names.unusable:
            why = (f"names it {names.unusable[letter]!r}, which holds a space or control character "
                   "no IMAP flag can")  # fmt: skip
        elif names.missing:
            why = "is missing, so it names no keyword"
        else:
            why = "names no keyword for it"
        what = f"the Maildir keyword letter {letter!r}"
        notes.append(LeftOff(what, f"the folder's {_KEYWORDS_FILE} {why}", tuple(sorted(by_letter[letter]))))
    return notes


def _stored_size(base: str) -> int:
    """The ``,S=<size>`` field of a base name (bytes in the file), -1 when absent or malformed."""
    return _size_field(base, ",S=")


def _size_field(base: str, marker: str) -> int:
    """A ``,S=`` or ``,W=`` (size with CRLF line endings) field, -1 when absent or malformed."""
    start = base.find(marker)
    if start < 0:
        return -1
    digits = base[start + len(marker) :].partition(",")[0]
    return int(digits) if digits.isdigit() else -1


def _order(
    entries: list[os.DirEntry[str]], uidlist: UidList | None
) -> list[tuple[int, str, os.DirEntry[str]]]:
    """(uid, base name, entry) in UID order; see the module docstring for how UIDs are chosen."""
    by_base: list[tuple[str, os.DirEntry[str]]] = []
    for base, e in sorted(((e.name.partition(":")[0], e) for e in entries), key=lambda be: be[0]):
        if not by_base or by_base[-1][0] != base:  # same base in cur/ and new/ (a move in flight): once
            by_base.append((base, e))
    if uidlist is None:
        return [(i, base, e) for i, (base, e) in enumerate(by_base, 1)]
    known: list[tuple[int, str, os.DirEntry[str]]] = []
    unknown: list[tuple[str, os.DirEntry[str]]] = []
    for base, e in by_base:
        uid = uidlist.uids.get(base)
        if uid is None:
            unknown.append((base, e))
        else:
            known.append((uid, base, e))
    known.sort(key=lambda r: r[0])
    first_new = max(uidlist.nextuid, known[-1][0] + 1 if known else 1)
    return known + [(first_new + i, base, e) for i, (base, e) in enumerate(unknown)]

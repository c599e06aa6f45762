"""Fill and read mailboxes of a test server *through IMAP*, never by writing Maildir files.

Going through IMAP keeps UIDs, flags and INTERNALDATE exactly as a real server assigns them.
Every helper logs in as ``user`` with the user's password, or with ``master=True`` as the
server's master user on behalf of ``user`` (``LOGIN "user*admin"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from imapclient import IMAPClient

from .dovecot import DovecotServer

#: One message as ``folder_snapshot`` sees it: (body, flags without \Recent, INTERNALDATE).
Message = tuple[bytes, frozenset[str], datetime]

_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def connect(server: DovecotServer, user: str, *, master: bool = False) -> IMAPClient:
    """A logged-in plain-IMAP client; use it as a context manager to log out."""
    client = IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=10)
    if master:
        client.login(server.master_login(user), server.master_password)
    else:
        client.login(user, server.users[user])
    return client


def create_folder(server: DovecotServer, user: str, name: str, *, master: bool = False) -> None:
    """Create ``name`` (any Unicode; imapclient encodes it as modified UTF-7).

    Hierarchy uses the server's separator ("." with the default Maildir++ layout).
    """
    with connect(server, user, master=master) as client:
        client.create_folder(name)


def append(
    server: DovecotServer,
    user: str,
    folder: str,
    body: bytes,
    flags: Iterable[str] = (),
    internaldate: datetime | None = None,
    *,
    master: bool = False,
) -> int:
    """APPEND one message and return the UID the server gave it (from UIDPLUS APPENDUID).

    A naive ``internaldate`` is taken as local time (imapclient's rule); pass an aware one.
    """
    with connect(server, user, master=master) as client:
        response = client.append(folder, body, flags=tuple(flags), msg_time=internaldate)
    match = _APPENDUID.search(response)
    if match is None:
        raise AssertionError(f"no APPENDUID in APPEND response: {response!r}")
    return int(match.group(1))


def folder_snapshot(server: DovecotServer, user: str, *, master: bool = False) -> dict[str, list[Message]]:
    """Every selectable folder's messages in UID order, for equality assertions.

    Flags are strings without ``\\Recent`` (it depends on who looked first); INTERNALDATE is a
    timezone-aware datetime.
    """
    snapshot: dict[str, list[Message]] = {}
    with connect(server, user, master=master) as client:
        client.normalise_times = False  # keep the server's offset: aware datetimes compare exactly
        for attributes, _delimiter, name in client.list_folders():
            if any(a.lower() in (b"\\noselect", b"\\nonexistent") for a in attributes):
                continue
            snapshot[name] = _read_folder(client, name)
    return snapshot


def _read_folder(client: IMAPClient, name: str) -> list[Message]:
    client.select_folder(name, readonly=True)
    uids = client.search("ALL")  # imapclient 4 drops FETCH results it can't match to a listed UID
    fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
    messages: list[Message] = []
    for uid in sorted(fetched):
        data = fetched[uid]
        flags = frozenset(f.decode() for f in data[b"FLAGS"] if f.lower() != b"\\recent")
        messages.append((data[b"BODY[]"], flags, data[b"INTERNALDATE"]))
    return messages

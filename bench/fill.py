"""Fill a source Dovecot fast: MULTIAPPEND batches over the project's own IMAP connection.

One APPEND command carries up to ``BATCH_MESSAGES`` messages (or ``BATCH_BYTES``) as LITERAL+
literals, so 5,000 messages take a few dozen round trips instead of 5,000.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from corpus import Message

from runners.imap.wire import ImapConnection

BATCH_MESSAGES = 500
BATCH_BYTES = 16 * 1024 * 1024


def _batches(messages: Sequence[Message]) -> Iterator[tuple[str, list[Message]]]:
    """Consecutive runs of one folder, cut at the batch limits (corpus order = UID order)."""
    batch: list[Message] = []
    size = 0
    for message in messages:
        if batch and (
            message.folder != batch[0].folder
            or len(batch) >= BATCH_MESSAGES
            or size + len(message.body) > BATCH_BYTES
        ):
            yield batch[0].folder, batch
            batch, size = [], 0
        batch.append(message)
        size += len(message.body)
    if batch:
        yield batch[0].folder, batch


def _append_pieces(conn: ImapConnection, folder: str, batch: list[Message]) -> list[bytes | tuple[bytes]]:
    pieces: list[bytes | tuple[bytes]] = [b"APPEND " + conn.astring(folder)]
    for message in batch:
        flags = " ".join(message.flags).encode("ascii")
        pieces.append(b" (" + flags + b') "' + message.internaldate.encode("ascii") + b'" ')
        pieces.append((message.body,))
    return pieces


def fill_user(
    host: str, port: int, master: str, password: str, user: str, messages: Sequence[Message]
) -> None:
    """Create the corpus' folders for ``user`` and append every message, in order."""
    conn = ImapConnection(host, port, security="plain", timeout=120)
    conn.connect()
    try:
        conn.authenticate_plain(master, password, authzid=user)
        if not conn.has("MULTIAPPEND"):
            raise RuntimeError("the source server does not offer MULTIAPPEND")
        for folder in sorted({m.folder for m in messages} - {"INBOX"}):
            conn.command(b"CREATE " + conn.astring(folder), f"CREATE {folder}")  # NO if it exists: fine
        for folder, batch in _by_folder(messages):
            reply = conn.send_with_literals(_append_pieces(conn, folder, batch), f"APPEND {folder}")
            if reply.status != "OK":
                raise RuntimeError(f"APPEND to {user}/{folder} failed: {reply.status} {reply.text}")
    finally:
        conn.close()


def _by_folder(messages: Sequence[Message]) -> Iterator[tuple[str, list[Message]]]:
    # Group per folder first so each folder's batches are full (fewer round trips), keeping order.
    folders: dict[str, list[Message]] = {}
    for message in messages:
        folders.setdefault(message.folder, []).append(message)
    for folder_messages in folders.values():
        yield from _batches(folder_messages)


def fill_users(
    host: str,
    port: int,
    master: str,
    password: str,
    corpora: dict[str, Sequence[Message]],
    parallel: int = 4,
) -> None:
    """Fill several users at once: Dovecot does the writing, so a few connections overlap well."""
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="fill") as pool:
        futures = [
            pool.submit(fill_user, host, port, master, password, user, messages)
            for user, messages in corpora.items()
        ]
        for future in futures:
            future.result()

"""The two mail platforms of the lab, filled from ``data``: the legacy one (Courier-style
``INBOX.`` namespace with ``.`` separators) and the cloud target (``/`` separators, Exchange-style
special folders created with every account, a 2 MB message limit)."""

from __future__ import annotations

from lab import data
from lab.mailstore import INBOX, MailStore

TARGET_FOLDERS = (
    ("Sent Items", ("\\Sent",)),
    ("Drafts", ("\\Drafts",)),
    ("Deleted Items", ("\\Trash",)),
    ("Junk Email", ("\\Junk",)),
    ("Archive", ("\\Archive",)),
)


def legacy_wire_name(path: str) -> str:
    """``Archive/2023`` → ``INBOX.Archive.2023`` (the legacy server's own spelling)."""
    return INBOX if path == INBOX else "INBOX." + path.replace("/", ".")


def legacy_platform(lab: data.LabData) -> MailStore:
    store = MailStore("legacy", ".", "INBOX.", *data.LEGACY_MASTER)
    for box in lab.mailboxes:
        account = store.add_account(box.address, box.password)
        account.login_refusal = box.login_refusal
        for path in box.folders:
            folder = store.create(account, legacy_wire_name(path))
            folder.refusal = box.refused_folders.get(path)
        for message in box.messages:
            folder = store.create(account, legacy_wire_name(message.folder))
            folder.append(message.body, set(message.flags), message.date, message.corrupt)
    return store


def target_platform(lab: data.LabData) -> MailStore:
    store = MailStore(
        "target",
        "/",
        "",
        *data.TARGET_MASTER,
        max_message_bytes=data.TARGET_LIMIT,
        default_folders=TARGET_FOLDERS,
    )
    for box in lab.mailboxes:
        if box.on_target:
            store.add_account(box.address, box.password)
    return store

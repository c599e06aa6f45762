"""The emulated Exchange of ``cutover demo --target ews``: the lab's target mailboxes, one service
account with ApplicationImpersonation on all of them, and the lab target's 2 MB message limit."""

from __future__ import annotations

from lab import data
from lab.ews.config import EwsConfig, Mailbox

#: The demo's service account (logon name, password): a lab secret like the others in lab.data.
SERVICE_ACCOUNT = (f"svc-cutover@{data.DOMAIN}", "ews-service-secret")


def demo_config(lab: data.LabData) -> EwsConfig:
    """Every mailbox the lab's target has (not the ones seeded as missing there)."""
    mailboxes = {
        box.address: Mailbox(max_message_size=data.TARGET_LIMIT, display_name=data.display_name(box.local))
        for box in lab.mailboxes
        if box.on_target
    }
    user, password = SERVICE_ACCOUNT
    return EwsConfig(accounts={user: password}, impersonation={user: frozenset({"*"})}, mailboxes=mailboxes)

"""The demo lab's Microsoft 365 tenant: Acme's target users as Graph mailboxes.

For ``cutover demo --target graph``: the same people as the IMAP target (lab/platforms.py), the
henry.jones of the story still missing, the target's 2 MB message limit as each mailbox's maximum
receive size, acme.example with the records Exchange Online expects, and one app registration
with the roles both creation routes need.
"""

from __future__ import annotations

from lab import data
from lab.graph.config import AppConfig, DomainConfig, GraphConfig, UserConfig, default_records

#: The demo app registration (a throwaway lab credential, like the lab's IMAP master passwords).
DEMO_APP_ID = "6a1c3e5f-0b2d-4e6f-8a9b-0c0d0e0f0a0b"
DEMO_APP_SECRET = "demo-graph-app-secret"  # noqa: S105 (a lab credential, like lab.data's)
DEMO_TENANT_ID = "7d3b2a1c-4e5f-4a6b-9c8d-acee00000001"
DEMO_ROLES = frozenset(
    {
        "Mail.ReadWrite",
        "Mail-Advanced.ReadWrite.All",
        "MailboxSettings.Read",
        "User.Read.All",
        "Domain.Read.All",
    }
)


def demo_config(content: data.LabData | None = None) -> GraphConfig:
    """The tenant for the lab's data (built afresh when not given)."""
    content = content or data.build()
    users = tuple(
        UserConfig(box.address, display_name=data.display_name(box.local), max_receive_size=data.TARGET_LIMIT)
        for box in content.mailboxes
        if box.on_target
    )
    return GraphConfig(
        tenant_id=DEMO_TENANT_ID,
        apps=(AppConfig(DEMO_APP_ID, secret=DEMO_APP_SECRET, roles=DEMO_ROLES),),
        users=users,
        domains=(DomainConfig(data.DOMAIN, default_records(data.DOMAIN)),),
    )

"""The migration plan: a TOML file plus a mailbox CSV, validated on load."""

from runners.plan.model import Endpoint, FolderRules, MailboxEntry, Plan, Secret

__all__ = ["Endpoint", "FolderRules", "MailboxEntry", "Plan", "Secret"]

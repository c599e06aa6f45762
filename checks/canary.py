"""The canary mailbox: the one mailbox a check may write to (an APPEND removed again).

``[checks] canary`` names it by its source login or its target address; without it, the first
mailbox of the plan is the canary.
"""

from __future__ import annotations

from runners.errors import MigrationError
from runners.plan.model import MailboxEntry, Plan


def canary(plan: Plan) -> MailboxEntry:
    """The mailbox ``[checks] canary`` names, else the plan's first one."""
    if not plan.mailboxes:
        raise MigrationError("the plan lists no mailboxes: there is no canary")
    wanted = plan.readiness.canary
    if wanted is None:
        return plan.mailboxes[0]
    folded = wanted.casefold()
    for entry in plan.mailboxes:
        if folded in (entry.source.casefold(), entry.target.casefold()):
            return entry
    raise MigrationError(
        f'[checks] canary = "{wanted}" is neither a source login nor a target address of the plan'
    )

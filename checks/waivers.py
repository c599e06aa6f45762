"""Plan waivers: a finding accepted with a reason until an expiry date. Expired waivers re-open it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date

from checks.model import Outcome
from runners.plan.readiness_parts import Waiver


def apply_waivers(outcomes: Sequence[Outcome], waivers: Sequence[Waiver], today: date | None = None) -> None:
    today = today or date.today()
    for outcome in outcomes:
        for index, finding in enumerate(outcome.findings):
            if finding.severity == "pass":
                continue
            for waiver in waivers:
                if waiver.check.upper() != finding.check_id or waiver.object not in ("*", finding.object_id):
                    continue
                if waiver.key is not None and waiver.key != finding.key:
                    continue
                if waiver.expires < today:
                    continue  # expired: the finding counts again
                by = f" by {waiver.approved_by}" if waiver.approved_by else ""
                note = f"waived{by} until {waiver.expires.isoformat()}: {waiver.reason}"
                outcome.findings[index] = dataclasses.replace(finding, waiver=note)
                break

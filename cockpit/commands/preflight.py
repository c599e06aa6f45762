"""What every command that connects says first: certificates not verified, secrets others can read.

``cutover run``, ``check``, ``verify`` and ``tui`` call ``warn_before_connecting`` (``demo`` builds
its own lab plan, which verifies its certificates and keeps its secrets private).
"""

from __future__ import annotations

import sys
from typing import TextIO

from runners.plan.exposure import exposure_problems
from runners.plan.model import Plan


def connect_warnings(plan: Plan) -> list[str]:
    """The warnings for ``plan``, one line each (empty: nothing to say)."""
    warnings = []
    for side, endpoint in (("source", plan.source), ("target", plan.target)):
        if endpoint.security != "plain" and not endpoint.tls_verify:
            warnings.append(f"{side} TLS certificates are NOT verified (tls_verify = false)")
    for side, directory in (
        ("source", plan.readiness.source_directory),
        ("target", plan.readiness.target_directory),
    ):
        if directory is not None and not directory.tls_verify:
            warnings.append(f"[directory.{side}] TLS certificates are NOT verified (tls_verify = false)")
    warnings += exposure_problems(plan)
    return warnings


def warn_before_connecting(plan: Plan, stream: TextIO | None = None) -> None:
    """Print ``connect_warnings`` to stderr, each as ``cutover: warning: ...``."""
    for warning in connect_warnings(plan):
        print(f"cutover: warning: {warning}", file=stream or sys.stderr)

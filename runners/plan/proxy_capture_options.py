"""``[proxy.capture]``: keeping the passwords the proxy saw a backend accept, for a legacy platform with
no master account, and the ``captured:`` reference that makes the engine log in with them.

::

    [proxy.capture]
    enabled = true
    key = "env:CAPTURE_KEY"             # a secret reference: 32 bytes, base64 or hex (AES-256-GCM)
    previous_keys = ["file:/etc/cutover/capture-key.old"]   # still read; a re-key moves them to `key`
    expiry_days = 30                    # a captured password is gone this long after its capture

A mailbox row's ``source_password`` (or ``[source] password``) of ``captured:`` logs in to the legacy
with the password captured for that user (``target_password`` likewise on the target). The keys are
secret references like every other: read only when a password is sealed or opened, never at load time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runners.errors import SecretError
from runners.plan.secret import Secret
from runners.plan.tables import Table

if TYPE_CHECKING:
    from runners.plan.state_model import StateServer

CAPTURE_KEYS = ("enabled", "key", "previous_keys", "expiry_days")
#: The secret reference that means "the password the proxy captured for this user".
CAPTURED_REF = "captured:"
DEFAULT_EXPIRY_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    enabled: bool = False
    key: Secret | None = None
    previous_keys: tuple[Secret, ...] = ()
    expiry_days: float = DEFAULT_EXPIRY_DAYS


@dataclass(frozen=True, slots=True, repr=False)
class CapturedSecret(Secret):
    """``captured:``: the password the proxy captured for the user on ``backend``, opened with the
    plan's capture keys from the store at ``state_db`` (``runners.connectors.captured``). It is never
    revealed as a literal: only the connectors' credential lookup reads it."""

    backend: str = "legacy"
    state_db: Path = Path()
    #: ``[state] url``: the shared PostgreSQL store the password is in (None: SQLite at ``state_db``).
    state_server: StateServer | None = None
    capture: CaptureSettings = CaptureSettings()

    @property
    def described(self) -> str:
        return CAPTURED_REF

    def reveal(self) -> str:
        raise SecretError(f"the {self.backend} password captured by the proxy is read from the state store")


def load_capture(root: Table) -> CaptureSettings:
    """``[proxy.capture]`` (disabled when absent). Raises ``PlanError`` naming file, line and key."""
    proxy = root.table("proxy")
    table = proxy.table("capture") if proxy is not None else None
    if table is None:
        return CaptureSettings()
    table.check_keys(CAPTURE_KEYS)
    enabled = table.boolean("enabled", True)
    key = table.secret_ref("key")
    if enabled and key is None:
        raise table.error(
            "key", "[proxy.capture] is enabled but has no key (a secret reference: env:NAME or file:PATH)"
        )
    if key is not None and key.startswith(CAPTURED_REF):
        raise table.error("key", "the capture key can't itself be a captured password")
    return CaptureSettings(
        enabled=enabled,
        key=Secret(key) if key is not None else None,
        previous_keys=tuple(Secret(ref) for ref in table.string_list("previous_keys")),
        expiry_days=table.positive_number("expiry_days", DEFAULT_EXPIRY_DAYS),
    )

"""What an emulated Exchange server is: its accounts, mailboxes, limits and version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Exchange 2013 and later: maxAllowedContentLength / maxReceivedMessageSize of the EWS virtual
#: directory (https://learn.microsoft.com/en-us/exchange/mail-flow/message-size-limits, table
#: "Exchange Web Services": 64 MB).
EWS_REQUEST_LIMIT = 67_108_864
#: EWSMaxConcurrency of the default throttling policy, Exchange 2013 and later
#: (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange).
EWS_MAX_CONCURRENCY = 27
#: The organisation's default MaxSendSize / MaxReceiveSize (10 MB) that applies to a mailbox whose
#: own limit is "Unlimited" (https://learn.microsoft.com/en-us/exchange/mail-flow/message-size-limits).
DEFAULT_MAX_MESSAGE_SIZE = 10_485_760


@dataclass(frozen=True, slots=True)
class ServerVersion:
    """What ServerVersionInfo says: the build numbers of one Exchange release.

    Exchange 2019 CU14 is 15.2.1544.4 and Exchange 2016 CU23 is 15.1.2507.6
    (https://learn.microsoft.com/en-us/exchange/new-features/build-numbers-and-release-dates);
    both answer Version="V2017_07_11" in ServerVersionInfo.
    """

    major: int
    minor: int
    major_build: int
    minor_build: int
    version: str = "V2017_07_11"


EXCHANGE_2019 = ServerVersion(15, 2, 1544, 4)
EXCHANGE_2016 = ServerVersion(15, 1, 2507, 6)


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox: its limits, and the display name ResolveNames answers."""

    quota_bytes: int | None = None  # ProhibitSendReceiveQuota; None is unlimited
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE  # MaxReceiveSize
    display_name: str = ""
    has_archive: bool = False  # an online archive: archiveroot / archivemsgfolderroot exist


@dataclass(frozen=True, slots=True)
class EwsConfig:
    """Everything an emulator instance is told at start.

    ``accounts`` maps a logon name (compared case-insensitively, as Active Directory does) to its
    password; ``impersonation`` maps a logon name to the SMTP addresses it holds the
    ApplicationImpersonation role for (``"*"`` among them: every mailbox). ``mailboxes`` maps a
    primary SMTP address to its limits. A logon name that is itself a mailbox address may open that
    mailbox without impersonation.
    """

    accounts: Mapping[str, str]
    mailboxes: Mapping[str, Mailbox]
    impersonation: Mapping[str, frozenset[str]] = field(default_factory=dict)
    auth_modes: tuple[str, ...] = ("basic",)
    request_limit: int = EWS_REQUEST_LIMIT
    max_concurrency: int = EWS_MAX_CONCURRENCY
    #: BackOffMilliseconds answered with a concurrency ErrorServerBusy
    concurrency_back_off_ms: int = 1000
    version: ServerVersion = EXCHANGE_2019
    #: domains Autodiscover answers for; empty means the domains of ``mailboxes``
    domains: tuple[str, ...] = ()

    def password_of(self, user: str) -> str | None:
        for name, password in self.accounts.items():
            if name.lower() == user.lower():
                return password
        return None

    def may_impersonate(self, user: str, mailbox: str) -> bool:
        for name, allowed in self.impersonation.items():
            if name.lower() == user.lower():
                return "*" in allowed or mailbox.lower() in {a.lower() for a in allowed}
        return False

    def mailbox(self, address: str) -> tuple[str, Mailbox] | None:
        """The primary address as configured and its limits, for an address in any letter case."""
        for smtp, limits in self.mailboxes.items():
            if smtp.lower() == address.lower():
                return smtp, limits
        return None

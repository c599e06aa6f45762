"""What the emulated tenant holds: its apps, users, domains and the service's limits.

The defaults are the real service's figures (Microsoft Graph throttling limits, Outlook service
limits: https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits). Every
limit can be overridden so a test can scale a 10-minute window down to seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Per app per mailbox budget, and the request size limits.

    concurrency, requests/request_window and upload_bytes/upload_window: throttling-limits page,
    "Outlook service limits" (4 concurrent requests, 10,000 API requests per 10 minutes, 150 MB
    upload (PATCH, POST, PUT) per 5 minutes). request_bytes: "4 MB" request cap of the attach-large
    -files page and the message resource. upload_session_min/max: 3 MB to 150 MB
    (https://learn.microsoft.com/en-us/graph/outlook-large-attachments).
    """

    concurrency: int = 4
    requests: int = 10_000
    request_window: float = 600.0
    upload_bytes: int = 150_000_000
    upload_window: float = 300.0
    request_bytes: int = 4 * MIB
    upload_session_min: int = 3 * MIB
    upload_session_max: int = 150 * MIB
    #: Largest chunk one PUT to an upload URL may carry (the large-attachments page: "up to 4 MB").
    upload_chunk_max: int = 4 * MIB
    #: Seconds a MailboxConcurrency 429 tells the client to wait; None: no Retry-After at all
    #: (what the service often does for this limit).
    concurrency_retry_after: int | None = None
    #: $batch: sub-requests per batch and how many of them run at once (json-batching page).
    batch_max: int = 20
    batch_parallel: int = 4
    #: Distinct named properties a mailbox may hold (Exchange's named-property quota; 16,384 is the
    #: figure Exchange documents for a mailbox database's NamedPropertyQuota; not stated for Online).
    named_properties: int = 16_384


@dataclass(frozen=True, slots=True)
class AppConfig:
    """An app registration with its application permissions (roles) granted and consented.

    secret: a client secret; certificate_pem: the PEM of the app's certificate, whose key signs
    msal's client assertion (both may be given). mailbox_scope: the mailboxes an RBAC for
    Applications scope lets the app reach (addresses, lower case compared); None means all.
    """

    client_id: str
    secret: str | None = None
    certificate_pem: bytes | None = None
    roles: frozenset[str] = frozenset(
        {
            "Mail.ReadWrite",
            "Mail-Advanced.ReadWrite.All",
            "MailboxSettings.Read",
            "User.Read.All",
            "Domain.Read.All",
        }
    )
    mailbox_scope: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class UserConfig:
    """A user of the tenant. quota_bytes: mailbox size past which creates fail (None: unlimited);
    max_receive_size: largest message the mailbox accepts (Exchange Online's default, "35 MB" on
    https://learn.microsoft.com/en-us/graph/api/attachment-createuploadsession)."""

    address: str
    display_name: str = ""
    has_mailbox: bool = True
    quota_bytes: int | None = None
    max_receive_size: int = 35 * MIB
    id: str = ""

    def object_id(self) -> str:
        """The user's directory object id (derived from the address when not given: stable)."""
        return self.id or str(uuid.uuid5(uuid.NAMESPACE_URL, "user:" + self.address.lower()))


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """A verified domain and the DNS records Microsoft expects for it, each a dict in the shape of
    a domainDnsRecord (recordType Mx/CName/Txt, label, ttl, isOptional, supportedService, and
    mailExchange+preference, canonicalName or text)."""

    name: str
    records: tuple[Mapping[str, Any], ...] = ()


def default_records(domain: str) -> tuple[Mapping[str, Any], ...]:
    """The Exchange records serviceConfigurationRecords lists for a domain: MX to Exchange Online
    Protection, the autodiscover CNAME and the SPF include."""
    mx_host = domain.replace(".", "-") + ".mail.protection.outlook.com"
    return (
        {
            "recordType": "Mx",
            "label": domain,
            "ttl": 3600,
            "isOptional": False,
            "supportedService": "Email",
            "mailExchange": mx_host,
            "preference": 0,
        },
        {
            "recordType": "Txt",
            "label": domain,
            "ttl": 3600,
            "isOptional": False,
            "supportedService": "Email",
            "text": "v=spf1 include:spf.protection.outlook.com -all",
        },
        {
            "recordType": "CName",
            "label": "autodiscover." + domain,
            "ttl": 3600,
            "isOptional": False,
            "supportedService": "Email",
            "canonicalName": "autodiscover.outlook.com",
        },
    )


@dataclass(frozen=True, slots=True)
class GraphConfig:
    """The whole emulated tenant.

    supports_import_mime: whether POST .../importMime exists for this tenant (beta; where it
    doesn't, the service answers 400 as for an unknown segment). import_mime_received: where an
    importMime'd message's receivedDateTime comes from, which Microsoft does not document:
    "now" (import time), "date" (its Date header) or "received" (its newest Received header).
    token_lifetime: seconds an access token lives (the real service: 60 to 90 minutes).
    """

    tenant_id: str = "5f0e2a6c-8d51-4c1e-9f3b-2b7d5c1a9e40"
    apps: tuple[AppConfig, ...] = ()
    users: tuple[UserConfig, ...] = ()
    domains: tuple[DomainConfig, ...] = ()
    supports_import_mime: bool = True
    import_mime_received: str = "now"
    limits: Limits = field(default_factory=Limits)
    token_lifetime: float = 3600.0

    def app(self, client_id: str) -> AppConfig | None:
        return next((a for a in self.apps if a.client_id == client_id), None)

"""Users, mailbox settings and domains.

Pages: https://learn.microsoft.com/en-us/graph/api/user-get,
https://learn.microsoft.com/en-us/graph/api/user-get-mailboxsettings,
https://learn.microsoft.com/en-us/graph/api/domain-get,
https://learn.microsoft.com/en-us/graph/api/domain-list-serviceconfigurationrecords.
"""

from __future__ import annotations

from typing import Any

from lab.graph.context import Call, Reply, Tenant
from lab.graph.errors import GraphError, access_denied
from lab.graph.query import options

USER_PROPERTIES = (
    "id",
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "accountEnabled",
    "proxyAddresses",
    "mailNickname",
)
USER_ROLES = ("User.Read.All", "User.ReadBasic.All", "User.ReadWrite.All", "Directory.Read.All")
SETTINGS_ROLES = ("MailboxSettings.Read", "MailboxSettings.ReadWrite")
DOMAIN_ROLES = ("Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All")


def _directory_denied() -> GraphError:
    # Directory resources answer in the directory's words, not Exchange's.
    return GraphError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def get_user(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/user-get"""
    if not call.roles & set(USER_ROLES):
        raise _directory_denied()
    opts = options(call, ("$select",), USER_PROPERTIES, type_name="microsoft.graph.user")
    user = tenant.user(params["user"])
    if user is None:
        raise GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{params['user']}' does not exist or one of its queried reference-property objects are not present.",
        )
    local = user.address.split("@")[0]
    full: dict[str, Any] = {
        "businessPhones": [],
        "displayName": user.display_name or local,
        "givenName": None,
        "jobTitle": None,
        "mail": user.address,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": None,
        "userPrincipalName": user.address,
        "id": user.object_id(),
    }
    if opts.select:
        extra = {"accountEnabled": True, "proxyAddresses": [f"SMTP:{user.address}"], "mailNickname": local}
        shown = {k: full.get(k, extra.get(k)) for k in opts.select}
        context = call.context_url(f"users({', '.join(opts.select)})/$entity")
    else:
        shown, context = full, call.context_url("users/$entity")
    return Reply(200, {"@odata.context": context, **shown})


def get_mailbox_settings(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/user-get-mailboxsettings
    The emulator has no maximum receive size here: Graph doesn't
    expose one (the docs list no such property)."""
    call.require(*SETTINGS_ROLES)
    options(
        call,
        ("$select",),
        (
            "archiveFolder",
            "timeZone",
            "automaticRepliesSetting",
            "language",
            "workingHours",
            "dateFormat",
            "timeFormat",
            "userPurpose",
            "delegateMeetingMessageDeliveryOptions",
        ),
        type_name="microsoft.graph.mailboxSettings",
    )
    mailbox = call.mailbox
    assert mailbox is not None
    archive = mailbox.folder("archive")
    return Reply(
        200,
        {
            "@odata.context": call.context_url(f"users('{params['user']}')/mailboxSettings"),
            "archiveFolder": archive.id if archive else None,
            "timeZone": "UTC",
            "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
            "dateFormat": "MM/dd/yyyy",
            "timeFormat": "hh:mm tt",
            "userPurpose": "user",
            "automaticRepliesSetting": {
                "status": "disabled",
                "externalAudience": "all",
                "internalReplyMessage": "",
                "externalReplyMessage": "",
                "scheduledStartDateTime": {"dateTime": "2026-01-01T00:00:00.0000000", "timeZone": "UTC"},
                "scheduledEndDateTime": {"dateTime": "2026-01-02T00:00:00.0000000", "timeZone": "UTC"},
            },
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": "08:00:00.0000000",
                "endTime": "17:00:00.0000000",
                "timeZone": {"name": "UTC"},
            },
        },
    )


def _domain(tenant: Tenant, name: str) -> Any:
    found = next((d for d in tenant.config.domains if d.name.lower() == name.lower()), None)
    if found is None:
        raise GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{name}' does not exist or one of its queried reference-property objects are not present.",
        )
    return found


def get_domain(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/domain-get"""
    if not call.roles & set(DOMAIN_ROLES):
        raise _directory_denied()
    options(call, ())
    domain = _domain(tenant, params["domain"])
    return Reply(
        200,
        {
            "@odata.context": call.context_url("domains/$entity"),
            "authenticationType": "Managed",
            "availabilityStatus": None,
            "id": domain.name,
            "isAdminManaged": True,
            "isDefault": False,
            "isInitial": False,
            "isRoot": True,
            "isVerified": True,
            "passwordNotificationWindowInDays": 14,
            "passwordValidityPeriodInDays": 2147483647,
            "supportedServices": ["Email", "OfficeCommunicationsOnline"],
            "state": None,
        },
    )


_RECORD_TYPES = {
    "Mx": "domainDnsMxRecord",
    "CName": "domainDnsCnameRecord",
    "Txt": "domainDnsTxtRecord",
    "Srv": "domainDnsSrvRecord",
}


def service_configuration_records(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/domain-list-serviceconfigurationrecords"""
    if not call.roles & set(DOMAIN_ROLES):
        raise _directory_denied()
    options(call, ())
    domain = _domain(tenant, params["domain"])
    rows: list[dict[str, Any]] = []
    for record in domain.records:
        kind = str(record["recordType"])
        rows.append(
            {
                "@odata.type": "#microsoft.graph." + _RECORD_TYPES.get(kind, "domainDnsRecord"),
                "id": f"{kind}-{len(rows)}",
                **record,
            }
        )
    return Reply(
        200,
        {
            "@odata.context": call.context_url(f"domains('{domain.name}')/serviceConfigurationRecords"),
            "value": rows,
        },
    )


def check_mailbox_scope(call: Call, address: str) -> None:
    """RBAC for Applications: a mailbox outside the app's management scope is access denied
    (https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac)."""
    scope = call.app.mailbox_scope
    if scope is not None and address.lower() not in {a.lower() for a in scope}:
        raise access_denied()

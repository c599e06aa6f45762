"""A strict Exchange Web Services (EWS) emulator: what the EWS target is tested against.

Exchange can't run here, so the ``ews`` target is proven against this emulator, which behaves as
Microsoft documents Exchange Server 2019 (or 2016) where migrations break, and refuses, as a SOAP
fault recorded in ``unknown_requests``, anything it does not know or model. docs/ews-emulator.md
lists what it models, the documentation page each behaviour follows, and what it does not model.

Public API::

    from lab.ews import EwsConfig, EwsEmulator, Mailbox

    config = EwsConfig(
        accounts={"svc-migrate@corp.example": "secret"},          # logon name → password (Basic)
        impersonation={"svc-migrate@corp.example": frozenset({"*"})},  # ApplicationImpersonation scope
        mailboxes={"ann@corp.example": Mailbox(quota_bytes=None, max_message_size=10_485_760)},
        # auth_modes=("basic",) (and/or "ntlm"), request_limit=67_108_864, max_concurrency=27,
        # concurrency_back_off_ms=1000, version=EXCHANGE_2019
    )
    with EwsEmulator(config) as emulator:        # or .start() / .stop()
        emulator.url               # https://127.0.0.1:PORT/EWS/Exchange.asmx
        emulator.autodiscover_url  # https://127.0.0.1:PORT/autodiscover/autodiscover.svc (POX: .xml)
        emulator.ca_file           # PEM of the throwaway CA that signed the server certificate
        emulator.host, emulator.port
        emulator.inject("drop_after" | "http_503" | "slow" | "server_busy" | "item_error",
                        operation="CreateItem", count=1, seconds=0.0, back_off_ms=30_000,
                        code="ErrorItemCorrupt")  # item_error: per item, the batch goes on
        gate = emulator.hold("GetFolder")  # the next GetFolder waits in the server until gate.set()
        emulator.clear_injections()
        emulator.items("ann@corp.example", "inbox")   # [Item]: every property as stored
        emulator.mailbox("ann@corp.example")          # folders and items
        emulator.folder_names("ann@corp.example")     # ["Archive", "Inbox", "Inbox/Projects", …]
        emulator.requests          # {"CreateItem": 3, …}
        emulator.http_statuses     # {200: 5, 401: 1, …}
        emulator.unknown_requests  # [] unless something was refused as unknown/unmodelled
        emulator.in_flight(user)   # requests being served for a logon name
        emulator.tamper(item_id, attachment=(0, b"…"), received=dt, sent=dt, is_read=…,
                        categories=[…], body=(0, "text"))
        emulator.delete_item("ann@corp.example", item_id)  # as its user would delete it

An ``Item`` has ``item_id``, ``folder_id``, ``subject``, ``headers`` (the kept ones),
``bodies`` (``BodyPart(content_type, text)``), ``attachments`` (``Attachment(name,
content_type, data, content_id, is_inline)``), ``message_flags``, ``is_draft``, ``is_read``,
``received``, ``sent``, ``created``, ``size``, ``categories``, ``flag_status`` (0x1090),
``last_verb`` (0x1081), ``extended`` (every extended property as stored) and
``named(property_set_guid, name)``.
"""

from lab.ews.config import (
    DEFAULT_MAX_MESSAGE_SIZE,
    EWS_MAX_CONCURRENCY,
    EWS_REQUEST_LIMIT,
    EXCHANGE_2016,
    EXCHANGE_2019,
    EwsConfig,
    Mailbox,
    ServerVersion,
)
from lab.ews.emulator import EwsEmulator
from lab.ews.store import Attachment, BodyPart, Folder, Item

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "EWS_MAX_CONCURRENCY",
    "EWS_REQUEST_LIMIT",
    "EXCHANGE_2016",
    "EXCHANGE_2019",
    "Attachment",
    "BodyPart",
    "EwsConfig",
    "EwsEmulator",
    "Folder",
    "Item",
    "Mailbox",
    "ServerVersion",
]

"""A strict Microsoft Graph emulator (mail, users, domains, the token endpoint) on loopback HTTPS.

The Graph target is tested against this, not against the real service; every behaviour names the
learn.microsoft.com page it follows, and docs/graph-emulator.md lists what it does not model.

Public API::

    from lab.graph import GraphEmulator, GraphConfig, AppConfig, UserConfig, DomainConfig, Limits

    config = GraphConfig(
        tenant_id="…",                                   # a GUID (default given)
        apps=(AppConfig("client-id", secret="s3cret",     # and/or certificate_pem=b"-----BEGIN CERT…"
                        roles=frozenset({"Mail.ReadWrite", "Mail-Advanced.ReadWrite.All"}),
                        mailbox_scope=None),)             # or frozenset({"a@x.example"}): RBAC scope
        users=(UserConfig("a@x.example", quota_bytes=None, max_receive_size=36 MiB, has_mailbox=True),),
        domains=(DomainConfig("x.example", default_records("x.example")),),
        supports_import_mime=True,                        # False: beta importMime answers 400
        import_mime_received="now",                       # or "date" / "received" (undocumented)
        limits=Limits(concurrency=4, requests=10_000, request_window=600, upload_bytes=150_000_000,
                      upload_window=300, request_bytes=4 MiB, upload_session_min=3 MiB,
                      upload_session_max=150 MiB, concurrency_retry_after=None, batch_max=20,
                      batch_parallel=4),
        token_lifetime=3600.0)
    with GraphEmulator(config) as emulator:               # or .start() / .stop()
        emulator.graph_url     # https://127.0.0.1:PORT  (then /v1.0/… and /beta/…)
        emulator.authority     # https://127.0.0.1:PORT/<tenant id>  (msal, instance_discovery=False)
        emulator.token_url     # the authority's /oauth2/v2.0/token
        emulator.ca_file       # PEM path of the throwaway CA: msal verify=, httpx verify=ssl_context()
        emulator.ssl_context() # client ssl.SSLContext trusting only that CA

        # faults, on command
        emulator.drop_after_create(count=1, mailbox=None)   # create succeeds, connection closed unanswered
        emulator.fail_with_503(count=1, mailbox=None, retry_after=None)
        emulator.slow(seconds, count=1, mailbox=None)
        emulator.poison(b"marker", mailbox=None)  # importMime of a MIME holding it: 500, every time
        gate = emulator.gate("a@x.example"); gate.wait_held(4); gate.release()   # hold requests in flight
        emulator.clear_faults(); emulator.expire_tokens()
        emulator.dropped_creates            # immutable ids whose create answer was dropped

        # inspection
        emulator.items("a@x.example", folder="Inbox")   # [Item(id, immutable_id, folder, route,
                                            #   is_draft, is_read, flag_status, categories, received,
                                            #   sent, created, subject, internet_message_id,
                                            #   in_reply_to, references, properties, attachments,
                                            #   headers, body_type, body)]
        emulator.folders("a@x.example")     # ["Archive", "Deleted Items", "Inbox", "Inbox/Sub", …]
        emulator.unknown_requests           # [] when the client used only what Graph has
        emulator.internal_errors            # [] unless the emulator itself failed (answered 500)
        emulator.throttled                  # [ThrottleEvent(at, app_id, mailbox, reason, retry_after)]
        emulator.throttled_after(60.0)      # the 429s answered after the first minute
        emulator.request_counts("a@x.example")  # {"requests": n, "status:429": n, "create:json": n,
                                            #  "create:importMime": n, "create:mime": n, "update": n, …}
        emulator.in_flight(m), emulator.peak_in_flight(m)
        emulator.tamper("a@x.example", item_id, attachment=(0, b"…"), received=datetime, sent=…, body=…)
        emulator.delete_item("a@x.example", item_id)  # as its user would delete it
        emulator.add_user(UserConfig(...))

    lab.graph.demo.demo_config(content: lab.data.LabData | None = None) -> GraphConfig   # the demo lab's tenant
    (DEMO_APP_ID, DEMO_APP_SECRET, DEMO_TENANT_ID)

A client must trust ``ca_file`` (msal: an ``http_client`` whose ``trust_env`` is off, or requests
prefers REQUESTS_CA_BUNDLE from the environment), compare extended-property ids by value (the
emulator answers them in the service's spelling, ``Integer 0xe07``), and expect nothing the docs
don't promise: docs/graph-emulator.md lists every choice made where they are silent.
"""

from lab.graph.config import AppConfig, DomainConfig, GraphConfig, Limits, UserConfig, default_records
from lab.graph.emulator import GraphEmulator, Item
from lab.graph.faults import Gate
from lab.graph.throttle import ThrottleEvent

__all__ = [
    "AppConfig",
    "DomainConfig",
    "Gate",
    "GraphConfig",
    "GraphEmulator",
    "Item",
    "Limits",
    "ThrottleEvent",
    "UserConfig",
    "default_records",
]

"""The keys of ``[source]``/``[target]`` that only one endpoint type takes, apart from that type's parser.

Every plan's endpoints are checked against them; ``runners.plan.ews_options`` and ``graph_options``
(their parsers, and dataclasses a plan without such a target never needs) load only with such a target.
"""

#: Keys only ``type = "ews"`` takes (``auth`` and ``password`` are shared with the other types).
EWS_KEYS = (
    "ews_url",
    "autodiscover",
    "service_account",
    "impersonation",
    "request_limit_bytes",
    "batch_items",
    "max_concurrency",
    "oauth_client_id",
    "oauth_tenant_id",
)

#: Keys only ``type = "graph"`` takes (``runners.plan.graph_options``).
GRAPH_KEYS = (
    "tenant_id",
    "client_id",
    "client_secret",
    "client_certificate",
    "authority_url",
    "graph_url",
    "route",
    "pace_concurrency",
    "pace_requests",
    "pace_request_window",
    "pace_upload_bytes",
    "pace_upload_window",
)

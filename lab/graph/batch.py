"""JSON batching: POST /$batch with up to 20 requests.

https://learn.microsoft.com/en-us/graph/json-batching: "requests" each with id, method, url
(relative to the version), optional headers, body (JSON, or base64 for other content types) and
dependsOn; the answer is 200 with "responses" each carrying id, status, headers and body, in any
order. Requests without dependsOn may run in parallel (Outlook: 4 at a time,
https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits), so a 200 batch
can hold 429 answers. A request whose dependency failed answers 424 Failed Dependency.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lab.graph.context import Call, Reply, SubRequest, Tenant
from lab.graph.errors import GraphError, bad_request
from lab.graph.query import options

_REQUEST_FIELDS = frozenset({"id", "method", "url", "headers", "body", "dependsOn", "atomicityGroup"})


def _validate(requests: Any, limit: int) -> list[dict[str, Any]]:
    if not isinstance(requests, list) or not requests:
        raise bad_request("The batch request has no requests.", "BadRequest")
    if len(requests) > limit:
        raise bad_request(f"Number of batch request steps exceeds the maximum of {limit}.", "BadRequest")
    ids: set[str] = set()
    for item in requests:
        if not isinstance(item, dict) or set(item) - _REQUEST_FIELDS:
            extra = sorted(set(item) - _REQUEST_FIELDS) if isinstance(item, dict) else ["?"]
            raise GraphError(
                400, "BadRequest", f"Invalid batch payload: unknown property {extra[0]!r}.", unknown=True
            )
        for name in ("id", "method", "url"):
            if not isinstance(item.get(name), str) or not item[name]:
                raise bad_request(f"Invalid batch payload: each request needs '{name}'.")
        if item["id"] in ids:
            raise bad_request(f"Batch request ids must be unique: '{item['id']}' repeats.")
        ids.add(item["id"])
        if "atomicityGroup" in item:
            raise GraphError(400, "BadRequest", "atomicityGroup is not taken by the emulator.", unknown=True)
    for item in requests:
        for dependency in item.get("dependsOn", []):
            if dependency not in ids:
                raise bad_request(f"Batch request '{item['id']}' depends on unknown '{dependency}'.")
    return requests


def run_batch(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/json-batching"""
    options(call, ())
    body = call.json()
    if set(body) != {"requests"}:
        raise GraphError(400, "BadRequest", 'A batch body is {"requests": [...]}.', unknown=True)
    limits = tenant.config.limits
    requests = _validate(body["requests"], limits.batch_max)
    results: dict[str, dict[str, Any]] = {}
    drop = False
    pending = list(requests)
    while pending:
        ready = [r for r in pending if all(d in results for d in r.get("dependsOn", []))]
        if not ready:  # a cycle
            raise bad_request("The dependsOn of the batch requests form a cycle.")
        runnable, failed_dependency = [], []
        for item in ready:
            if any(not 200 <= results[d]["status"] < 300 for d in item.get("dependsOn", [])):
                failed_dependency.append(item)
            else:
                runnable.append(item)
        for item in failed_dependency:
            results[item["id"]] = _answer(
                item["id"],
                Reply(
                    424,
                    {
                        "error": {
                            "code": "FailedDependency",
                            "message": "A request this one depends on failed.",
                        }
                    },
                ),
            )
        for item, reply in zip(
            runnable, _run_all(tenant, call, runnable, limits.batch_parallel), strict=True
        ):
            drop = drop or reply.drop
            results[item["id"]] = _answer(item["id"], reply)
        pending = [r for r in pending if r["id"] not in results]
    return Reply(200, {"responses": [results[r["id"]] for r in requests]}, drop=drop)


#: Threads kept for the requests of every batch: starting a pool per batch cost more CPU than a
#: sub-request. Its bound is far above any real load (4 per batch in flight); _run_all keeps each
#: batch to its own limit, so what runs at once is what a pool per batch ran.
_THREADS = ThreadPoolExecutor(max_workers=1024, thread_name_prefix="graph-batch")


def _run_all(tenant: Tenant, call: Call, items: list[dict[str, Any]], parallel: int) -> list[Reply]:
    """The replies to items, in order, at most `parallel` running at a time: that many workers
    each take the next item until none is left (as a pool of `parallel` threads does)."""
    replies: list[Reply | None] = [None] * len(items)
    taken = itertools.count()  # next() on it is atomic under the GIL
    failed = threading.Event()

    def worker() -> None:
        while not failed.is_set() and (index := next(taken)) < len(items):
            try:
                replies[index] = _run(tenant, call, items[index])
            except BaseException:
                failed.set()  # as map() does: the items not yet started are not run
                raise

    workers = [_THREADS.submit(worker) for _ in range(min(parallel, len(items)))]
    for future in workers:
        future.result()
    return [reply for reply in replies if reply is not None]


def _run(tenant: Tenant, call: Call, item: dict[str, Any]) -> Reply:
    headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
    # The batch's own headers (Prefer among them) are not carried into its requests (json-batching).
    body = b""
    parsed_body = None
    if "body" in item:
        content_type = headers.get("content-type")
        if content_type is None:
            return Reply(
                400,
                {
                    "error": {
                        "code": "BadRequest",
                        "message": "Content-Type header must be specified when a body is given.",
                    }
                },
            )
        if "application/json" in content_type.lower():
            body = json.dumps(item["body"]).encode()
            parsed_body = item["body"]
        else:
            try:
                body = base64.b64decode(str(item["body"]), validate=True)
            except (binascii.Error, ValueError):
                return Reply(
                    400,
                    {"error": {"code": "BadRequest", "message": "A non-JSON body must be base64-encoded."}},
                )
    url = item["url"] if item["url"].startswith("/") else "/" + item["url"]
    if url.split("?")[0].rstrip("/").lower() == "/$batch":
        # A batch can't hold a batch (json-batching: the requests are "individual requests").
        tenant.record_unknown(f"{item['method']} $batch inside $batch")
        return Reply(
            400,
            {"error": {"code": "BadRequest", "message": "A batch request can't contain a batch request."}},
        )
    assert tenant.dispatch is not None
    return tenant.dispatch(
        SubRequest(
            item["method"].upper(),
            call.version,
            url,
            headers,
            body,
            call.app,
            call.roles,
            call.base_url,
            parsed_body,
        )
    )


def _answer(request_id: str, reply: Reply) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": request_id, "status": reply.status}
    headers = dict(reply.headers)
    if reply.json is not None:
        headers.setdefault("Content-Type", "application/json")
        answer["body"] = reply.json
    elif reply.body:
        headers.setdefault("Content-Type", reply.content_type)
        answer["body"] = base64.b64encode(reply.body).decode("ascii")
    elif reply.status == 204:
        answer["body"] = None  # as the json-batching page shows a 204
    if headers:
        answer["headers"] = headers
    return answer

"""One mailbox's HTTP conversation with Microsoft Graph: authenticated, paced, throttling honoured.

Every request:
* carries ``Prefer: IdType="ImmutableId"`` so stored item ids survive moves
  (https://learn.microsoft.com/graph/outlook-immutable-id);
* is sent inside ``pace.slot(bytes)`` of the mailbox's budget (``runners.pacing``), so that the
  mailbox's workers together stay under Graph's per-app-and-mailbox limits
  (https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits);
* on 429 sets the scope's back-off to Retry-After (to the second, for every worker of the mailbox)
  or, without one ("MailboxConcurrency"), to a jittered exponential wait, and is sent again;
* on 401 gets a fresh token once (an expired one), then fails for good.

A request that may have created something (a POST) is never sent again here after a dropped
connection or a 5xx: the caller looks the item up by its key first (``graph_target``).
"""

from __future__ import annotations

import email.utils
import json as _json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from runners.connectors.graph_errors import error_for, failure_of
from runners.connectors.graph_token import TokenSource
from runners.connectors.tls import tls_context
from runners.errors import ConnectError, ConnectionLost, TlsError
from runners.pacing import Pace
from runners.plan.model import Endpoint
from runners.safe_text import safe

#: Throttled or 5xx answers in a row after which a request gives up (the scope's back-off keeps
#: growing meanwhile; Microsoft's windows are at most 10 minutes).
MAX_ATTEMPTS = 12
TRANSIENT = frozenset({429, 502, 503, 504})
IMMUTABLE_IDS = 'IdType="ImmutableId"'


@dataclass(slots=True)
class HttpStats:
    """What one conversation cost: for the bench and for status."""

    requests: int = 0
    throttled: list[float] = field(default_factory=list)  # time.monotonic() of each 429
    upload_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, sent: int, status: int) -> None:
        with self.lock:
            self.requests += 1
            self.upload_bytes += sent
            if status == 429:
                self.throttled.append(time.monotonic())


class GraphHttp:
    """Requests to ``graph_url`` for one mailbox, thread-safe (httpx's client is)."""

    def __init__(
        self, endpoint: Endpoint, tokens: TokenSource, pace: Pace, stats: HttpStats | None = None
    ) -> None:
        assert endpoint.graph is not None
        self.base = endpoint.graph.graph_url
        self.server = f"{endpoint.host}:{endpoint.port}"
        self.tokens = tokens
        self.pace = pace
        self.stats = stats or HttpStats()
        self.client = httpx.Client(
            verify=tls_context(endpoint),
            timeout=httpx.Timeout(endpoint.timeout, connect=min(endpoint.timeout, 30.0)),
            limits=httpx.Limits(max_connections=max(endpoint.graph.pace_concurrency, 1) + 1),
            headers={"Prefer": IMMUTABLE_IDS, "User-Agent": "cutover-cockpit"},
            follow_redirects=False,
        )

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.base + path

    def send(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        json: Any = None,
        content: bytes | list[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        creates: bool = False,
        authorised: bool = True,
        requests: int = 1,
        counted_bytes: int | None = None,
    ) -> httpx.Response:
        """Send and return Graph's answer once it is not "wait" (429/5xx, unless ``creates``) nor
        an expired token. Raises ``ConnectionLost`` when the connection broke (after retries,
        unless ``creates``). A ``$batch`` of ``requests`` spends that many of the budget, and
        ``counted_bytes`` of upload when given (what the service counts: its requests' bodies),
        else the whole body. ``content`` as a list of parts is sent one after the other, never
        joined into one copy."""
        extra = dict(headers or {})
        if json is not None:  # encoded here so that its size counts against the upload budget
            content = _json.dumps(json).encode()
            extra.setdefault("Content-Type", "application/json")
        if isinstance(content, list):
            sent = sum(len(part) for part in content)
            extra["Content-Length"] = str(sent)  # Graph takes no chunked body (411)
        else:
            sent = len(content) if content is not None else 0
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            request_headers = dict(extra)
            if authorised:
                request_headers["Authorization"] = "Bearer " + self.tokens.token(fresh=False).value
            try:
                with self.pace.slot(sent if counted_bytes is None else counted_bytes, requests):
                    response = self.client.request(
                        method, self.url(path), content=content, headers=request_headers, params=params
                    )
            except httpx.ConnectError as exc:
                if "CERTIFICATE" in str(exc).upper() or "SSL" in str(exc).upper():
                    raise TlsError(self.server, operation, str(exc)) from None
                if attempt < MAX_ATTEMPTS and not creates:
                    self.pace.back_off_jittered(attempt, f"{operation}: {safe(exc)}")
                    continue
                raise ConnectError(self.server, operation, str(exc)) from None
            except httpx.TransportError as exc:  # dropped or timed out after the request went out
                if attempt < MAX_ATTEMPTS and not creates:
                    self.pace.back_off_jittered(attempt, f"{operation}: {safe(exc)}")
                    continue
                raise ConnectionLost(self.server, operation, str(exc) or type(exc).__name__) from None
            self.stats.count(sent, response.status_code)
            status = response.status_code
            if status == 401 and authorised and not refreshed:
                refreshed = True
                self.tokens.token(fresh=True)
                continue
            if status in TRANSIENT and attempt < MAX_ATTEMPTS and (status == 429 or not creates):
                self.wait_as_told(response, attempt, operation)
                continue
            return response

    def wait_as_told(self, response: httpx.Response, attempt: int, operation: str) -> None:
        """Set the mailbox's back-off from a 429/503 answer (Retry-After, else jitter)."""
        failure = failure_of(response)
        reason = f"{operation}: {failure.text}"
        seconds = retry_after(response.headers.get("Retry-After"))
        if seconds is not None:
            self.pace.back_off(seconds, reason)
        else:
            self.pace.back_off_jittered(attempt, reason)

    def check(self, response: httpx.Response, operation: str, permission: str) -> httpx.Response:
        """``response`` if it is a success; else the error it means, raised."""
        if response.is_success:
            return response
        raise error_for(self.server, operation, failure_of(response), permission)

    def pages(self, path: str, operation: str, permission: str, params: Mapping[str, str] | None = None
              ) -> Iterator[dict[str, Any]]:  # fmt: skip
        """Every item of a collection, following ``@odata.nextLink`` to the end."""
        url: str | None = path
        query = params
        while url is not None:
            data = self.check(self.send("GET", url, operation, params=query), operation, permission).json()
            yield from data.get("value", [])
            url = data.get("@odata.nextLink")
            query = None  # the next link carries the query

    def close(self) -> None:
        self.client.close()


def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

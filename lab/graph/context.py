"""What a handler gets (Call) and gives back (Reply), and the tenant's state they work on."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.graph.config import AppConfig, GraphConfig, UserConfig
from lab.graph.errors import GraphError, access_denied
from lab.graph.faults import Faults
from lab.graph.mailbox import Mailbox
from lab.graph.throttle import Throttle
from lab.graph.tokens import TokenMinter


@dataclass(slots=True)
class Call:
    """One request to the Graph API (top-level or inside a $batch)."""

    method: str
    version: str  # "v1.0" or "beta"
    segments: list[str]
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    app: AppConfig
    roles: frozenset[str]
    base_url: str  # https://127.0.0.1:PORT
    mailbox: Mailbox | None = None
    #: The body already parsed (a $batch request's JSON body, SubRequest.parsed_body).
    parsed_body: Any = None

    @property
    def path(self) -> str:
        return "/" + "/".join(self.segments)

    @property
    def immutable_ids(self) -> bool:
        """Prefer: IdType="ImmutableId" (https://learn.microsoft.com/en-us/graph/outlook-immutable-id)."""
        prefer = self.headers.get("prefer", "")
        return "idtype" in prefer.lower() and "immutableid" in prefer.lower().replace('"', "")

    def json(self) -> dict[str, Any]:
        content_type = self.headers.get("content-type", "")
        if "application/json" not in content_type.lower():
            raise GraphError(
                415, "UnsupportedMediaType", f"Content-Type {content_type!r} is not application/json."
            )
        value, self.parsed_body = self.parsed_body, None  # handed out once: a second call parses
        try:
            if value is None:
                value = json.loads(self.body or b"null")
        except ValueError as exc:
            raise GraphError(
                400, "UnableToDeserializePostBody", "Unable to deserialize the request body."
            ) from exc
        if not isinstance(value, dict):
            raise GraphError(400, "UnableToDeserializePostBody", "The request body must be a JSON object.")
        return value

    def require(self, *any_of: str) -> None:
        """The app needs one of these roles (permissions reference of each page)."""
        if not self.roles & set(any_of):
            raise access_denied()

    def context_url(self, fragment: str) -> str:
        return f"{self.base_url}/{self.version}/$metadata#{fragment}"


@dataclass(slots=True)
class Reply:
    status: int
    json: dict[str, Any] | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    #: Set by create handlers: the immutable id of the item made (the dropped-connection fault).
    created: str | None = None
    #: Close the connection instead of answering (the dropped-connection fault).
    drop: bool = False


@dataclass(slots=True)
class SubRequest:
    """A request to run through the whole pipeline (routing, auth already done, throttling)."""

    method: str
    version: str
    url: str  # path and query, after the version
    headers: dict[str, str]
    body: bytes
    app: AppConfig
    roles: frozenset[str]
    base_url: str
    #: json.loads(body), where the caller has it already: a $batch request's body was parsed with
    #: the batch, and body is its json.dumps (loads of that gives the same value back).
    parsed_body: Any = None


Handler = Callable[["Tenant", Call, dict[str, str]], Reply]


class Tenant:
    """Everything the emulated service knows and counts."""

    def __init__(self, config: GraphConfig) -> None:
        self.config = config
        self.minter = TokenMinter(config.tenant_id)
        self.throttle = Throttle(config.limits)
        self.faults = Faults()
        self.lock = threading.Lock()
        self.users: dict[str, UserConfig] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        for user in config.users:
            self.add_user(user)
        self.unknown_requests: list[str] = []
        self.internal_errors: list[str] = []
        self.counters: Counter[tuple[str, str]] = Counter()  # (mailbox, operation) -> count
        self.upload_sessions: dict[str, Any] = {}
        #: Runs one sub-request of a $batch (set by the service; the batch handler calls it).
        self.dispatch: Callable[[SubRequest], Reply] | None = None

    def add_user(self, user: UserConfig) -> None:
        address = user.address.lower()
        self.users[address] = user
        if user.has_mailbox:
            self.mailboxes[address] = Mailbox(
                address, user.object_id(), user.quota_bytes, user.max_receive_size
            )

    def user(self, ref: str) -> UserConfig | None:
        """A user by UPN/address or object id (both case-insensitive)."""
        lowered = ref.lower()
        found = self.users.get(lowered)
        if found is not None:
            return found
        return next((u for u in self.users.values() if u.object_id().lower() == lowered), None)

    def count(self, mailbox: str, operation: str) -> None:
        with self.lock:
            self.counters[(mailbox, operation)] += 1

    def log(self, mailbox: str | None, status: int) -> None:
        """Count an answered Graph request against its mailbox ("" when it has none), and its status."""
        with self.lock:
            self.counters[(mailbox or "", "requests")] += 1
            self.counters[(mailbox or "", f"status:{status}")] += 1

    def record_internal_error(self, description: str) -> None:
        with self.lock:
            self.internal_errors.append(description)

    def record_unknown(self, description: str) -> None:
        with self.lock:
            self.unknown_requests.append(description)


def iso(value: dt.datetime | None) -> str | None:
    """Graph's DateTimeOffset rendering: UTC with a Z."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

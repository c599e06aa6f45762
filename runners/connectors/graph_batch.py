"""The JSON route's creates sent through Graph's JSON batching: up to 20 messages per HTTP request.

https://learn.microsoft.com/graph/json-batching: ``POST /$batch`` with ``{"requests": [...]}``, each
with id, method, url (relative to the version), headers and a JSON body; the answer is 200 with one
response per request, in any order. Graph counts every request of a batch against the mailbox's
budget and runs at most 4 of them at once
(https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits), so a batch spends as
many requests as it holds and takes all 4 of the mailbox's concurrency slots. It saves no budget;
it saves our CPU (one HTTP request, one TLS record stream and one JSON parse for 20 messages).

Every promise of the single create holds per message:
* each response is checked on its own; a 429 inside the 200 sets the mailbox's back-off (its
  Retry-After) and only that message is sent again, in a later batch;
* a 5xx for one message, or a batch whose answer is lost (dropped, 5xx), leaves those messages
  uncertain: they are looked up by their key before any is sent again;
* a refusal is recorded for its message with the server's words; one that finishes the mailbox
  (quota, permission) stops what was not sent yet.
The message bodies are encoded once (``graph_message.json_message``) and spliced into the batch
body as they are: no second encoding, no intermediate dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from runners.connectors.graph_errors import GraphFailure
from runners.connectors.graph_http import IMMUTABLE_IDS, MAX_ATTEMPTS, GraphHttp, retry_after
from runners.connectors.graph_message import INLINE_BUDGET
from runners.errors import CommandError, ConnectionLost, ProtocolError
from runners.model import AppendOutcome

#: Requests per batch (json-batching: "limited to 20").
BATCH_MAX = 20
#: The whole batch must stay under Graph's 4 MB request limit.
BATCH_BUDGET = INLINE_BUDGET
#: Answers after which a create may or may not have happened.
UNKNOWN_OUTCOME = frozenset({500, 502, 503, 504})
#: Tries of a message whose outcome stayed unknown (each after a look-up by key).
CREATE_ATTEMPTS = 3
#: The service counts each request of a batch as its own, by its body as it reads it (not the
#: batch around it); bytes allowed per request beyond our encoding of its body, for whitespace the
#: service may measure differently (the emulator re-encodes: 2 to 6 bytes more per message).
COUNTED_SLACK = 64
#: A group that the budget's windows take only in part, and in full not before this many seconds
#: (the room of a window that is spent until its oldest requests expire), is cut to the part they
#: take now: the rest goes in the next group. Within a window's run, room frees every few batches.
CUT_AFTER_SECONDS = 1.0


@dataclass(slots=True)
class Create:
    """One message to create: its key, its encoded JSON message, and what became of it."""

    key: str
    body: bytes
    outcome: AppendOutcome | None = None
    uncertain: int = 0  # sends whose outcome was unknown
    throttled: int = 0  # 429 answers for it
    index: int = 0  # its place in the caller's list


#: ``lookup(keys)``: {key: item id} of the items already made (``GraphTarget.find_in_folder``).
Lookup = Callable[[Sequence[str]], dict[str, str]]
#: ``refuse(failure)``: the outcome of a refusal (or raises, as ``GraphTarget._refused``).
Refuse = Callable[[GraphFailure], AppendOutcome]


class BatchCreates:
    """Creates into one folder of one mailbox, batched; ``run`` sets every ``Create.outcome``."""

    def __init__(self, http: GraphHttp, version: str, messages_path: str, lookup: Lookup, refuse: Refuse,
                 operation: str) -> None:  # fmt: skip
        self.http = http
        self.batch_url = f"/{version}/$batch"
        self.lookup = lookup
        self.refuse = refuse
        self.operation = operation
        #: The first answer that finished the mailbox (quota, permission), once ``run`` met one.
        self.fatal: AppendOutcome | None = None
        # The part of every request before its body, encoded once.
        self._head = (
            b'"method":"POST","url":' + json.dumps(messages_path).encode()
            + b',"headers":{"Content-Type":"application/json","Prefer":' + json.dumps(IMMUTABLE_IDS).encode()
            + b'},"body":'
        )  # fmt: skip

    def run(self, creates: Iterable[Create], pool: Executor) -> list[Create]:
        """Send every create; returns them, each with its outcome. On the first pass the next batch
        is built (``creates`` may encode each message as it is drawn) while the previous one is in
        flight, in ``pool``; at most one batch is in flight. A batch the budget takes only in part
        for a while is cut to that part (``_fitted``). Messages to send again follow."""
        seen: list[Create] = []
        carried: list[Create] = []  # drawn, cut from the last batch: first in the next

        def drawn() -> Iterator[Create]:
            for create in creates:
                while carried:
                    yield carried.pop(0)
                seen.append(create)
                yield create
            while carried:
                yield carried.pop(0)

        fatal: AppendOutcome | None = None
        in_flight: Future[AppendOutcome | None] | None = None
        for group in self._groups(drawn()):
            if in_flight is not None:
                fatal = in_flight.result() or fatal
                if fatal is not None:
                    break
            group, rest = self._fitted(group)
            carried[:0] = rest
            in_flight = pool.submit(self._send, group)
        if in_flight is not None and fatal is None:
            fatal = in_flight.result()
        # Those not drawn when the mailbox was finished are left undrawn: the caller says "not sent".
        while True:
            self.fatal = fatal
            pending = [c for c in seen if c.outcome is None]
            if not pending:
                return seen
            if fatal is not None:
                for create in pending:
                    create.outcome = AppendOutcome(
                        error=f"not sent: {fatal.error}", code=fatal.code, fatal_for_mailbox=True
                    )
                return seen
            for group in self._groups(pending):
                while group and fatal is None:
                    part, group = self._fitted(group)
                    fatal = self._send(part) or fatal
                if fatal is not None:
                    break

    def _fitted(self, group: list[Create]) -> tuple[list[Create], list[Create]]:
        """``group`` split into a part to send and the rest (for the next group). The windows
        take part of it now and all of it not within ``CUT_AFTER_SECONDS``: that part, or the room
        left waiting would be unused until the window's oldest requests expire (greedy use of a
        sliding window is the fastest). They take none of it now: what they can ever take, which
        ``slot`` lets go once it fits (the service would refuse more than its budget with 429s)."""
        pace = self.http.pace
        counted = [_counted(c) for c in group]
        budget = pace.budget
        # What the whole budget takes; at least one (the service refuses what can never fit).
        whole = max(1, _prefix(counted, budget.requests and budget.requests[0],
                               budget.upload_bytes and budget.upload_bytes[0]))  # fmt: skip
        now = _prefix(counted, *pace.room())
        if now == 0 or now == len(group):
            return group[:whole], group[whole:]
        if whole == len(group) and pace.ready_in(sum(counted), len(group)) < CUT_AFTER_SECONDS:
            return group, []
        return group[:now], group[now:]

    def _groups(self, creates: Iterable[Create]) -> Iterator[list[Create]]:
        group: list[Create] = []
        size = 16
        for create in creates:
            cost = len(create.body) + len(self._head) + 16
            if group and (len(group) >= BATCH_MAX or size + cost > BATCH_BUDGET):
                yield group
                group, size = [], 16
            group.append(create)
            size += cost
        if group:
            yield group

    def _body(self, group: Sequence[Create]) -> list[bytes]:
        """The batch's JSON as parts around each message's own bytes: sent in turn, never copied
        into one body (that copy would double the batch's memory while it is in flight)."""
        parts: list[bytes] = []
        for n, create in enumerate(group):
            parts += [b'%s{"id":"%d",%s' % (b"}," if n else b'{"requests":[', n, self._head), create.body]
        parts.append(b"}]}")
        return parts

    def _send(self, group: list[Create]) -> AppendOutcome | None:
        """One batch; returns the first outcome that finished the mailbox, if any."""
        try:
            response = self.http.send("POST", self.batch_url, self.operation, content=self._body(group),
                                      headers={"Content-Type": "application/json"}, creates=True,
                                      requests=len(group), counted_bytes=sum(map(_counted, group)))  # fmt: skip
        except ConnectionLost as exc:
            self._recover(group, exc)
            return None
        if response.status_code in UNKNOWN_OUTCOME:
            self.http.wait_as_told(response, 1, self.operation)
            self._recover(group, CommandError(self.http.server, self.operation, f"{response.status_code} batch",
                                              str(response.status_code), str(response.status_code),
                                              retryable=True))  # fmt: skip
            return None
        self.http.check(response, self.operation, "Mail.ReadWrite")  # the batch itself refused: raise
        fatal: AppendOutcome | None = None
        uncertain: list[Create] = []
        last: ProtocolError | None = None
        for answer in response.json()["responses"]:
            create = group[int(answer["id"])]
            status = int(answer["status"])
            if 200 <= status < 300:
                create.outcome = AppendOutcome(item_id=str(answer["body"]["id"]))
                create.body = b""  # made: its bytes are no longer needed
                continue
            failure = _failure(status, answer.get("body"))
            if status == 429:
                create.throttled += 1
                if create.throttled >= MAX_ATTEMPTS:
                    raise CommandError(self.http.server, self.operation, failure.text, failure.code or "429",
                                       "429", retryable=True)  # fmt: skip
                self._back_off(answer, failure, create.throttled)
            elif status in UNKNOWN_OUTCOME:
                uncertain.append(create)
                last = CommandError(self.http.server, self.operation, failure.text, failure.code or str(status),
                                    str(status), retryable=True)  # fmt: skip
            else:
                create.outcome = self.refuse(failure)
                if create.outcome.fatal_for_mailbox and fatal is None:
                    fatal = create.outcome
        if uncertain and last is not None:
            self._recover(uncertain, last)
        return fatal

    def _back_off(self, answer: dict[str, object], failure: GraphFailure, attempt: int) -> None:
        headers = answer.get("headers")
        value = None
        if isinstance(headers, dict):
            value = next((str(v) for k, v in headers.items() if str(k).lower() == "retry-after"), None)
        seconds = retry_after(value)
        reason = f"{self.operation}: {failure.text}"
        if seconds is not None:
            self.http.pace.back_off(seconds, reason)
        else:
            self.http.pace.back_off_jittered(attempt, reason)

    def _recover(self, creates: list[Create], error: ProtocolError) -> None:
        """Creates whose outcome is unknown: those found by key are done; the others are sent
        again, unless they were tried too often (then the error goes up: the engine retries)."""
        found = self.lookup([c.key for c in creates])
        for create in creates:
            create.uncertain += 1
            if create.key in found:
                create.outcome = AppendOutcome(item_id=found[create.key])
                create.body = b""
            elif create.uncertain >= CREATE_ATTEMPTS:
                raise error


def _counted(create: Create) -> int:
    """The upload bytes the service counts for ``create`` in a batch."""
    return len(create.body) + COUNTED_SLACK


def _prefix(counted: Sequence[int], requests: int | None, upload: int | None) -> int:
    """How many of the requests of ``counted`` bytes, in order, fit ``requests`` and ``upload``
    (None: no limit)."""
    fit = spent = 0
    for size in counted:
        if (requests is not None and fit + 1 > requests) or (upload is not None and spent + size > upload):
            break
        fit += 1
        spent += size
    return fit


def _failure(status: int, body: object) -> GraphFailure:
    code, message = "", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", ""))
        message = str(body["error"].get("message", ""))
    return GraphFailure(status, code, message or f"status {status}")

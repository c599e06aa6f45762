"""EWS requests we write ourselves, sent through exchangelib's transport.

exchangelib does the SOAP envelope (RequestServerVersion, ExchangeImpersonation), the
authentication (NTLM, Basic, OAuth), the HTTP session pool and the mapping of response codes to
exceptions. The request bodies and the reading of the answers are ours: so one CreateItem carries
the MIME and every property in one call, and nothing is sent that we didn't write.

Every request goes through ``Wire.call``: inside the service account's ``Pace`` slot, and
ErrorServerBusy makes every worker of that account wait BackOffMilliseconds, then the same request
is sent again (a busy answer means the server did not process it: EWS throttling,
learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange).
exchangelib's own retrying stays off (``FailFast``): its retry of a timed-out CreateItem can create
a duplicate; our engine retries after looking the item up by its key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from exchangelib.errors import ErrorServerBusy, ResponseMessageError
from exchangelib.services.common import EWSAccountService
from exchangelib.util import MNS, TNS, create_element

from runners.connectors.ews_body import Pieces, StreamedBody
from runners.pacing import Pace

#: How many busy answers in a row one request waits out before the engine is told (it retries later).
BUSY_ATTEMPTS = 8
#: A busy answer without BackOffMilliseconds: wait this long (exchangelib's RETRY_WAIT is 10 s).
BUSY_WITHOUT_WAIT_SECONDS = 5.0

Element = Any  # an lxml element (lxml ships no types)
#: A writer of request bytes (``Wire.call(..., fill=...)``).
Fill = Callable[[Pieces], None]
#: The text of the one element of a payload whose content ``fill`` writes as bytes.
FILL_MARK = "cutover-fill"
_FILL_BYTES = f">{FILL_MARK}<".encode()


def m(tag: str, text: str | None = None, **attrs: str) -> Element:
    """An element of the messages namespace, with text if given."""
    element = create_element(f"m:{tag}", attrs=attrs or None)
    if text is not None:
        element.text = text
    return element


def t(tag: str, text: str | None = None, **attrs: str) -> Element:
    """An element of the types namespace, with text if given."""
    element = create_element(f"t:{tag}", attrs=attrs or None)
    if text is not None:
        element.text = text
    return element


def tn(tag: str) -> str:
    return f"{{{TNS}}}{tag}"


def mn(tag: str) -> str:
    return f"{{{MNS}}}{tag}"


class HttpRefusal(Exception):
    """The web server in front of EWS refused the request with an HTTP status (413: too big for
    maxAllowedContentLength) and closed the connection. exchangelib reads any closed connection as
    "busy"; the status says what really happened."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}" + (f": {text}" if text else ""))
        self.status = status


_last = threading.local()


def record_answer(status: int, reason: str, text: str) -> None:
    """What the last HTTP answer on this thread was (the transport adapter calls this)."""
    _last.answer = (status, f"{reason} {text}".strip()[:500])


def last_answer() -> tuple[int, str] | None:
    answer: tuple[int, str] | None = getattr(_last, "answer", None)
    return answer


def back_off_of(exc: ErrorServerBusy) -> float | None:
    value = getattr(exc, "back_off", None)
    return float(value) if value else None


class _Raw(EWSAccountService):  # type: ignore[misc]
    """An operation whose ResponseMessage elements are handed back as they are, or as the exception
    their ResponseCode stands for (never raised half-way through a batch)."""

    #: Every per-message error comes back as a value, so one refused item doesn't hide the others.
    ERRORS_TO_CATCH_IN_RESPONSE = (ResponseMessageError,)
    WARNINGS_TO_CATCH_IN_RESPONSE = (ResponseMessageError,)
    #: Writes the content of the payload's ``FILL_MARK`` element straight into the request bytes.
    fill: Fill | None = None

    def wrap(self, content: Element, api_version: str | None = None) -> bytes | StreamedBody:
        """exchangelib's envelope (RequestServerVersion, ExchangeImpersonation) as it makes it; with
        ``fill``, the marked element's content is streamed while the request is sent: a
        CreateItem's MIME is never in memory a second time, as an lxml tree or as request bytes."""
        envelope: bytes = super().wrap(content=content, api_version=api_version)
        if self.fill is None:
            return envelope
        # The mark is the last text of the envelope (the body follows the header); text elsewhere
        # that looked like it would have its "<" escaped.
        head, mark, tail = envelope.rpartition(_FILL_BYTES)
        if not mark:
            raise ValueError(f"{self.SERVICE_NAME}: the payload has no {FILL_MARK} element")
        pieces = Pieces()
        self.fill(pieces)
        return StreamedBody(head + b">", pieces, b"<" + tail)

    @classmethod
    def _get_elements_in_container(cls, container: Element) -> list[Element]:
        return [container]

    def _elem_to_obj(self, elem: Element) -> Element:
        return elem

    @classmethod
    def _get_soap_parts(cls, response: Any) -> tuple[Element, Element]:
        # exchangelib parses ``response.iter_content()``, which yields one byte at a time: most of
        # its CPU for our batches. The body is already read (no streaming): parse it whole.
        return super()._get_soap_parts(_Whole(response.content))  # type: ignore[no-any-return]

    @staticmethod
    def _get_exception(
        code: str, text: str, msg_xml: Element = None, rule_errors: Element = None
    ) -> Exception:
        exc: Exception = EWSAccountService._get_exception(code, text, msg_xml, rule_errors)
        # A per-message ErrorServerBusy carries its wait in MessageXml, as the SOAP fault does.
        if isinstance(exc, ErrorServerBusy) and msg_xml is not None and exc.back_off is None:
            for value in msg_xml.findall(tn("Value")):
                if value.get("Name") == "BackOffMilliseconds" and (value.text or "").isdigit():
                    exc.back_off = int(value.text) / 1000.0
        return exc

    def run(self, payload: Element) -> list[Element | Exception]:
        return list(self._elems_to_objs(self._get_elements(payload=payload)))


class _Whole:
    """A response whose ``iter_content`` hands over the whole body in one piece."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def iter_content(self) -> Any:
        return iter((self.content,))


_OPERATIONS: dict[str, type[_Raw]] = {}


def operation(name: str) -> type[_Raw]:
    """The ``_Raw`` subclass for one EWS operation (``CreateItem``, ``FindItem``, ...)."""
    cls = _OPERATIONS.get(name)
    if cls is None:
        attributes: dict[str, Any] = {"SERVICE_NAME": name}
        if name == "GetMailTips":  # its answers are MailTipsResponseMessageType elements (GetMailTips page)
            attributes["_response_message_tag"] = classmethod(lambda _: mn("MailTipsResponseMessageType"))
        cls = _OPERATIONS[name] = type(name, (_Raw,), attributes)
    return cls


class Wire:
    """Sends our requests for one mailbox (an exchangelib ``Account``), paced for the service account."""

    def __init__(self, account: Any, pace: Pace, *, on_request: Callable[[str], None] | None = None) -> None:
        self.account = account
        self.pace = pace
        self.on_request = on_request

    def call(
        self, name: str, payload: Element, *, upload_bytes: int = 0, fill: Fill | None = None
    ) -> list[Element | Exception]:
        """The ResponseMessages of one request; waits out ErrorServerBusy for the whole account.
        ``fill`` writes the content of the payload's ``FILL_MARK`` element (``_Raw.wrap``).

        A busy answer to some messages of a batch (others done) is for the caller to resend: those
        come back as ``ErrorServerBusy`` values, after the back-off was set.
        """
        service = operation(name)
        for attempt in range(BUSY_ATTEMPTS):
            try:
                with self.pace.slot(upload_bytes):
                    if self.on_request is not None:
                        self.on_request(name)
                    request = service(account=self.account, chunk_size=1)
                    request.fill = fill
                    results = request.run(payload)
            except ErrorServerBusy as exc:
                answer = last_answer()
                if str(exc).startswith("Caused by closed connection") and answer and answer[0] != 200:
                    raise HttpRefusal(*answer) from None
                self.busy(exc, attempt)
                if attempt == BUSY_ATTEMPTS - 1:
                    raise
                continue
            for result in results:
                if isinstance(result, ErrorServerBusy):
                    self.busy(result, attempt)
                    break
            return results
        raise AssertionError("unreachable")  # the loop returns or raises

    def busy(self, exc: ErrorServerBusy, attempt: int) -> None:
        """The server said wait: every worker of this service account waits."""
        seconds = back_off_of(exc)
        reason = f"ErrorServerBusy: {exc}"
        if seconds is None:
            self.pace.back_off_jittered(attempt, reason)
        else:
            self.pace.back_off(seconds, reason)

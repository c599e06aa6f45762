"""The MAPI properties both Exchange targets (EWS and Graph) set when they create an item.

Exchange makes every imported MIME message a draft, stamps it with the import time and drops the
IMAP flags, unless the creating request carries these properties: they are settable at creation
only (PR_MESSAGE_FLAGS is read-only afterwards). Tags and values follow [MS-OXPROPS] and
[MS-OXCMSG] (learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxprops,
.../ms-oxcmsg "PidTagMessageFlags"); how IMAP flags map to them is ``runners.kept.ImapState``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runners.kept import ImapState, received_time, sent_time
from runners.model import AppendItem

PR_MESSAGE_FLAGS = 0x0E07  # PidTagMessageFlags, Integer
PR_MESSAGE_DELIVERY_TIME = 0x0E06  # PidTagMessageDeliveryTime, SystemTime: "received"
PR_CLIENT_SUBMIT_TIME = 0x0039  # PidTagClientSubmitTime, SystemTime: "sent"
PR_FLAG_STATUS = 0x1090  # PidTagFlagStatus, Integer
PR_LAST_VERB_EXECUTED = 0x1081  # PidTagLastVerbExecuted, Integer
PR_LAST_VERB_EXECUTION_TIME = 0x1082  # PidTagLastVerbExecutionTime, SystemTime
PR_TRANSPORT_MESSAGE_HEADERS = 0x007D  # PidTagTransportMessageHeaders, String
PR_IN_REPLY_TO_ID = 0x1042  # PidTagInReplyToId, String
PR_INTERNET_REFERENCES = 0x1039  # PidTagInternetReferences, String

MSGFLAG_READ = 0x1
#: A message with this flag is a draft ("not yet sent"): MIME imports get it unless told otherwise.
MSGFLAG_UNSENT = 0x8
FLAG_STATUS_FLAGGED = 2
VERB_REPLY = 102
VERB_FORWARD = 104

#: Our key lives in a named String property of our own property set: the ledger's identity of the
#: item, found again after a crash (FindItem restriction / Graph $filter). One fixed name, because
#: a mailbox has a quota of named properties.
KEY_PROPERTY_SET = "6a5c2f4e-3b1d-4c8e-9f27-c0a1d3e5b7f9"
KEY_PROPERTY_NAME = "CutoverKey"


@dataclass(frozen=True, slots=True)
class ExchangeProps:
    message_flags: int
    received: datetime | None
    sent: datetime | None
    flag_status: int | None
    last_verb: int | None
    #: PR_LAST_VERB_EXECUTION_TIME: IMAP doesn't say when a message was answered; the received time
    #: is the earliest it can have been, and Outlook shows a verb only with a time.
    last_verb_time: datetime | None
    categories: tuple[str, ...]
    key: str
    state: ImapState


def message_flags(state: ImapState) -> int:
    """PR_MESSAGE_FLAGS: read bit from \\Seen; unsent (a draft) only when the source says \\Draft."""
    flags = MSGFLAG_READ if state.read else 0
    return flags | MSGFLAG_UNSENT if state.draft else flags


def props_for(item: AppendItem) -> ExchangeProps:
    state = ImapState.from_flags(item.flags)
    received = received_time(item.internaldate, item.body)
    verb = VERB_REPLY if state.answered else VERB_FORWARD if state.forwarded else None
    return ExchangeProps(
        message_flags=message_flags(state),
        received=received,
        sent=sent_time(item.body),
        flag_status=FLAG_STATUS_FLAGGED if state.flagged else None,
        last_verb=verb,
        last_verb_time=received if verb is not None else None,
        categories=state.categories,
        key=item.key,
        state=state,
    )

"""A deterministic corpus of realistic RFC 5322 messages for the migration benchmark.

Sizes follow a mixture that looks like a real mailbox: 99 % log-normal around a 10 KB median
(text mail, clipped at 1 KB) and 1 % log-uniform between 200 KB and 2 MB (mail with
attachments). Everything comes from one ``random.Random(seed)``: the same seed gives the same
bytes, so runs are comparable.
"""

from __future__ import annotations

import base64
import math
import random
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

MIN_SIZE = 1024
MAX_SIZE = 2 * 1024 * 1024
MEDIAN_SIZE = 10 * 1024
SIGMA = 1.2  # spread of the text-mail sizes (natural log)
ATTACHMENT_SHARE = 0.01  # share of messages drawn from the large-attachment class
ATTACHMENT_MIN = 200 * 1024
#: A text body beyond this size gets its bulk from a base64 attachment instead.
TEXT_BODY_MAX = 48 * 1024
NO_MESSAGE_ID_SHARE = 0.03
DUPLICATE_SHARE = 0.01

#: (folder, share of messages). "." is Dovecot's Maildir++ separator: Archive is a parent only.
FOLDERS: tuple[tuple[str, float], ...] = (
    ("INBOX", 0.40),
    ("Sent", 0.20),
    ("Archive.2023", 0.15),
    ("Archive.2024", 0.10),
    ("Projects.Cutover", 0.10),
    ("Trash", 0.05),
)
KEYWORD = "$Work"

_WORDS = (
    "migration mailbox server cutover wave pilot folder message archive invoice meeting agenda "
    "please review attached report quarterly budget project timeline deadline update status team "
    "customer contract renewal support ticket escalation network storage backup restore weekend "
    "window change approval schedule minutes notes follow up question answer thanks regards best "
    "the a of to and in for on with at by from is are was be this that it as we you they our "
    "will can should would could have has had not all any more new old next last first final"
).split()
_NAMES = (
    "Alice Martin", "Bob Schulz", "Carol Dubois", "Dave Rossi", "Eve Novak", "Frank Berg",
    "Grace Lind", "Heidi Kovacs", "Ivan Petrov", "Judy Moreau", "Mallory Jansen", "Oscar Silva",
)  # fmt: skip
_ZONES = (UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)))
_EPOCH = datetime(2019, 1, 1, tzinfo=UTC)
_SPAN_SECONDS = 6 * 365 * 24 * 3600
_POOL_LINES = 4096
_SIGNATURE = b"-- \r\nSent from the benchmark corpus\r\n"


@dataclass(frozen=True, slots=True)
class Message:
    folder: str
    flags: tuple[str, ...]
    internaldate: str  # IMAP date-time: "05-Mar-2024 10:11:12 +0100"
    body: bytes


@dataclass(frozen=True, slots=True)
class CorpusStats:
    messages: int
    total_bytes: int
    median_bytes: int
    min_bytes: int
    max_bytes: int
    folders: dict[str, int]
    duplicates: int
    without_message_id: int


def draw_size(rng: random.Random) -> int:
    if rng.random() < ATTACHMENT_SHARE:
        return int(math.exp(rng.uniform(math.log(ATTACHMENT_MIN), math.log(MAX_SIZE))))
    size = int(rng.lognormvariate(math.log(MEDIAN_SIZE), SIGMA))
    return max(MIN_SIZE, min(MAX_SIZE, size))


def _text_pool(rng: random.Random) -> list[bytes]:
    """Wrapped prose lines (CRLF-terminated) that bodies are cut from: cheap to slice, plausible."""
    lines: list[bytes] = []
    for _ in range(_POOL_LINES):
        words: list[str] = []
        width = rng.randint(40, 76)
        while sum(len(w) + 1 for w in words) < width:
            words.append(rng.choice(_WORDS))
        line = " ".join(words)
        lines.append((line[0].upper() + line[1:] + ("." if rng.random() < 0.3 else "")).encode() + b"\r\n")
    return lines


class CorpusBuilder:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.pool = _text_pool(self.rng)

    def text(self, size: int) -> bytes:
        """``size`` bytes (give or take one) of prose from a random place in the pool."""
        signature = _SIGNATURE if self.rng.random() < 0.2 and size > 4 * len(_SIGNATURE) else b""
        wanted = size - len(signature)
        out: list[bytes] = []
        total = 0
        index = self.rng.randrange(len(self.pool))
        while total < wanted:
            line = self.pool[index % len(self.pool)]
            out.append(line)
            total += len(line)
            index += 1
        prose = b"".join(out)[: max(2, wanted) - 2].rstrip(b"\r") + b"\r\n"
        return prose + signature

    def when(self) -> datetime:
        moment = _EPOCH + timedelta(seconds=self.rng.randrange(_SPAN_SECONDS))
        return moment.astimezone(self.rng.choice(_ZONES))

    def flags(self, folder: str) -> tuple[str, ...]:
        rng = self.rng
        seen = folder == "Sent" or rng.random() < 0.75
        flags = ["\\Seen"] if seen else []
        if rng.random() < 0.06:
            flags.append("\\Flagged")
        if folder != "Sent" and rng.random() < 0.15:
            flags.append("\\Answered")
        if rng.random() < 0.05:
            flags.append(KEYWORD)
        return tuple(flags)

    def headers(self, index: int, folder: str, date: datetime, multipart_boundary: str | None) -> bytes:
        rng = self.rng
        sender, recipient = rng.sample(_NAMES, 2)
        if folder == "Sent":
            sender = "Bench User"
        subject = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 9))).capitalize()
        lines = [
            f"Received: from mx{rng.randint(1, 9)}.example.test by mail.example.test; "
            + date.strftime("%a, %d %b %Y %H:%M:%S %z"),
            f"From: {sender} <{_address(sender)}>",
            f"To: {recipient} <{_address(recipient)}>",
            f"Subject: {'Re: ' if rng.random() < 0.3 else ''}{subject}",
            "Date: " + (date - timedelta(seconds=rng.randint(1, 600))).strftime("%a, %d %b %Y %H:%M:%S %z"),
        ]
        if rng.random() >= NO_MESSAGE_ID_SHARE:
            lines.append(f"Message-ID: <{self.seed}.{index}.{rng.getrandbits(48):012x}@bench.example.test>")
        lines.append("MIME-Version: 1.0")
        if multipart_boundary is None:
            lines += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        else:
            lines.append(f'Content-Type: multipart/mixed; boundary="{multipart_boundary}"')
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def body(self, size: int, boundary: str | None) -> bytes:
        """A body of about ``size`` bytes: prose, or with ``boundary`` prose plus an attachment."""
        if boundary is None:
            return self.text(size)
        note = self.text(self.rng.randint(300, 4000))
        # base64 is 4/3 of the raw size plus CRLF after every 76 characters.
        raw = self.rng.randbytes(max(1, (size - len(note) - 400) * 3 * 76 // (4 * 78)))
        encoded = base64.encodebytes(raw).replace(b"\n", b"\r\n")
        name = f"report-{self.rng.randint(1, 999)}.pdf"
        parts = [
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".encode(),
            note,
            f'\r\n--{boundary}\r\nContent-Type: application/pdf; name="{name}"\r\n'
            f"Content-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'.encode(),
            encoded,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
        return b"".join(parts)

    def message(self, index: int, folder: str) -> Message:
        date = self.when()
        size = draw_size(self.rng)
        boundary = f"=_bench_{self.rng.getrandbits(64):016x}" if size > TEXT_BODY_MAX else None
        head = self.headers(index, folder, date, boundary)
        body = self.body(max(64, size - len(head)), boundary)
        return Message(folder, self.flags(folder), date.strftime("%d-%b-%Y %H:%M:%S %z"), head + body)


def _address(name: str) -> str:
    return name.lower().replace(" ", ".") + "@example.test"


def _pick_folder(rng: random.Random) -> str:
    return rng.choices([f for f, _ in FOLDERS], weights=[w for _, w in FOLDERS])[0]


def build_corpus(count: int, seed: int) -> list[Message]:
    """``count`` messages; about 1 % are byte-identical copies of an earlier one in the same folder."""
    builder = CorpusBuilder(seed)
    rng = builder.rng
    messages: list[Message] = []
    for index in range(count):
        earlier = [m for m in messages[-50:] if m.folder != "Sent"] if rng.random() < DUPLICATE_SHARE else []
        if earlier:
            messages.append(rng.choice(earlier))
        else:
            messages.append(builder.message(index, _pick_folder(rng)))
    return messages


def describe(messages: list[Message]) -> CorpusStats:
    sizes = [len(m.body) for m in messages]
    folders: dict[str, int] = {}
    for message in messages:
        folders[message.folder] = folders.get(message.folder, 0) + 1
    return CorpusStats(
        messages=len(messages),
        total_bytes=sum(sizes),
        median_bytes=int(statistics.median(sizes)) if sizes else 0,
        min_bytes=min(sizes, default=0),
        max_bytes=max(sizes, default=0),
        folders=folders,
        duplicates=len(messages) - len({id(m) for m in messages}),
        without_message_id=sum(1 for m in messages if b"\r\nMessage-ID:" not in m.body),
    )

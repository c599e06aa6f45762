"""What the demo lab holds: Acme's 50 mailboxes on the legacy platform, its directories, its DNS
zone, and the problems seeded into them. Deterministic: every start builds the same bytes.

The story: acme.example moves from a legacy Courier-style IMAP/POP3 platform (``INBOX.`` prefix,
``.`` separator, an OpenLDAP-style directory) to a cloud platform (``/`` separator, Exchange-style
folder names, an AD-style directory, a 2 MB message limit). The pilot wave holds the healthy
canary, two more healthy users and every mailbox whose problem a copy can show; henry.jones, who
is missing on the target, waits in a later wave: readiness is what must find him.
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from lab.dns_server import RecordSpec, Zone
from lab.ldap_server import Attributes

DOMAIN = "acme.example"
SEED = 20240501

LEGACY_MASTER = ("admin", "legacy-master-secret")
TARGET_MASTER = ("migration", "cloud-master-secret")
#: The target refuses messages over 2 MB (APPENDLIMIT and the plan's max_message_bytes).
TARGET_LIMIT = 2_000_000
#: The target's SMTP hub takes 1 MB: smaller than messages users keep.
HUB_SIZE = 1_000_000
HUB_HOST = "hub.mail.cloud.example"

LEGACY_BASE = "dc=acme,dc=example"
LEGACY_PEOPLE = f"ou=people,{LEGACY_BASE}"
LEGACY_READER = (f"cn=reader,{LEGACY_BASE}", "directory-reader-secret")
TARGET_BASE = "DC=corp,DC=acme,DC=example"
TARGET_USERS = f"OU=Users,{TARGET_BASE}"
TARGET_READER = (f"CN=svc-cutover,OU=Service,{TARGET_BASE}", "ad-reader-secret")

LEGACY_MX = ("mx1.legacy.acme.example", "mx2.legacy.acme.example")
MX_TTL = 86400  # a day: far above what a cutover can wait for

# Who has which problem (local parts).
CORRUPT = "dave.fischer"
UNSELECTABLE = "erin.garcia"
OVERSIZED = "frank.huber"
LOCKED = "grace.ito"
CATCH_ALL = "info"
MISSING_ON_TARGET = "henry.jones"

CORRUPT_WORDS = "[CORRUPTION] Message UID 3 is corrupt: the stored file is truncated"
UNSELECTABLE_FOLDER = "Projects"
UNSELECTABLE_WORDS = "[CORRUPTION] Mailbox INBOX.Projects: index file is corrupt, the folder can't be opened"
#: Why the locked account's logins fail (the server's log; IMAP and POP3 only say they failed).
LOCKED_WORDS = "account locked after repeated failed logins"
#: About this big: base64 in 76-character lines with CRLF, plus the headers.
OVERSIZED_BYTES = 2_600_000

_PEOPLE = (
    "alice.adams", "bob.brown", "carol.clark", CORRUPT, UNSELECTABLE, OVERSIZED, LOCKED, CATCH_ALL,
    MISSING_ON_TARGET, "irene.jung", "jack.keller", "kate.lopez", "liam.meyer", "mia.novak",
    "noah.olsen", "olivia.park", "paul.quinn", "quinn.roth", "rosa.silva", "sam.taylor",
    "tina.ueda", "umar.vogel", "vera.weber", "will.xu", "xena.young", "yusuf.zimmer",
    "zoe.abbott", "adam.baker", "beth.costa", "chris.dunn", "diana.evans", "eric.ford",
    "fiona.gray", "george.hall", "hanna.ivanova", "ivan.jensen", "julia.kim", "karl.lang",
    "lena.moreau", "marco.nagy", "nina.ortiz", "oscar.perez", "petra.quast", "rafael.ruiz",
    "sofia.schmidt", "tom.tanaka", "ulla.urban", "victor.voss", "wendy.walsh", "yara.yilmaz",
)  # fmt: skip
PILOT = ("alice.adams", "bob.brown", "carol.clark", CORRUPT, UNSELECTABLE, OVERSIZED, LOCKED, CATCH_ALL)
#: Addresses the catch-all INBOX received mail for (its own is info@).
CATCH_ALL_RECIPIENTS = ("sales", "jobs", "press", "billing", "orders", "support", "hello", "webmaster")

_WORDS = (
    "budget", "meeting", "invoice", "project", "schedule", "report", "review", "customer", "quarter",
    "proposal", "contract", "delivery", "update", "agenda", "minutes", "draft", "approval", "team",
    "office", "travel", "training", "release", "feedback", "deadline", "summary", "offer",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Message:
    folder: str  # path below the namespace, "/"-separated: "INBOX", "Sent", "Archive/2023"
    body: bytes
    flags: frozenset[str]
    date: datetime
    corrupt: str | None = None


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str
    name: str  # display name
    password: str
    wave: str
    messages: tuple[Message, ...]
    folders: tuple[str, ...]  # every folder path, parents included
    aliases: tuple[str, ...] = ()
    refused_folders: dict[str, str] = field(default_factory=dict)
    login_refusal: str | None = None
    on_target: bool = True

    @property
    def local(self) -> str:
        return self.address.partition("@")[0]


@dataclass(frozen=True, slots=True)
class Problem:
    """One seeded problem: where it is and what should find and explain it."""

    key: str
    mailbox: str
    what: str
    #: Check ids that must report it (a finding other than a pass) before any wave.
    found_by: tuple[str, ...]
    #: Finding objects it is about: addresses, domains, or a lab service name ("smtp-hub").
    objects: tuple[str, ...]
    #: Checks whose findings about it are shown too, whatever their severity.
    shown_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabData:
    mailboxes: tuple[Mailbox, ...]
    problems: tuple[Problem, ...]
    zone: Zone
    legacy_directory: tuple[tuple[str, Attributes], ...]
    target_directory: tuple[tuple[str, Attributes], ...]

    def mailbox(self, local: str) -> Mailbox:
        return next(m for m in self.mailboxes if m.local == local)


def address(local: str) -> str:
    return f"{local}@{DOMAIN}"


def display_name(local: str) -> str:
    return " ".join(part.capitalize() for part in local.split("."))


def build() -> LabData:
    rng = random.Random(SEED)
    mailboxes = tuple(_mailbox(rng, index, local) for index, local in enumerate(_PEOPLE))
    return LabData(
        mailboxes=mailboxes,
        problems=PROBLEMS,
        zone=_zone(),
        legacy_directory=_legacy_directory(mailboxes),
        target_directory=_target_directory(mailboxes),
    )


PROBLEMS = (
    Problem(
        "corrupt-message", address(CORRUPT), "INBOX UID 3 can't be read: FETCH answers NO",
        ("SRC-READ-004",), (address(CORRUPT),),
    ),
    Problem(
        "unselectable-folder", address(UNSELECTABLE), f"folder {UNSELECTABLE_FOLDER} refuses EXAMINE",
        ("SRC-LOGIN-002",), (f"{address(UNSELECTABLE)}/{UNSELECTABLE_FOLDER}",),
    ),
    Problem(
        "oversized-message", address(OVERSIZED), "a 2.6 MB message in Sent; the target takes 2 MB",
        ("TGT-SIZE-006",), (address(OVERSIZED),),
    ),
    Problem(
        "catch-all", address(CATCH_ALL), f"INBOX collects mail for many addresses; alias @{DOMAIN}",
        ("SRC-CATCH-008", "DIR-CATCH-005"), (address(CATCH_ALL), f"@{DOMAIN}"),
    ),
    Problem(
        "login-fails", address(LOCKED), "the account is locked: every login is refused",
        ("SRC-LOGIN-002",), (address(LOCKED),),
    ),
    Problem(
        "missing-target-user", address(MISSING_ON_TARGET), "in the legacy directory, not on the target",
        ("DIR-ADDR-001", "DIR-MBX-002"), (address(MISSING_ON_TARGET),),
    ),
    Problem(
        "legacy-mx", DOMAIN, f"MX still at the legacy platform, TTL {MX_TTL} s",
        ("DNS-TTL-004",), (DOMAIN,), shown_by=("DNS-CUT-002",),
    ),
    Problem(
        "small-hub", HUB_HOST, f"the target's SMTP hub: SIZE {HUB_SIZE}, no STARTTLS",
        ("TGT-SMTP-002",), ("smtp-hub",),
    ),
)  # fmt: skip


# --- mailboxes -------------------------------------------------------------------------------


def _mailbox(rng: random.Random, index: int, local: str) -> Mailbox:
    own = address(local)
    wave = "pilot" if local in PILOT else ("wave1" if index % 2 else "wave2")
    base = datetime(2023, 1, 9, 8, 0, tzinfo=timezone(timedelta(hours=1))) + timedelta(days=index)
    messages: list[Message] = []

    def add(folder: str, count: int, **kind: bool) -> None:
        for _ in range(count):
            date = base + timedelta(days=rng.randint(0, 500), minutes=rng.randint(0, 1440))
            messages.append(_message(rng, own, folder, date, len(messages), **kind))

    add("INBOX", rng.randint(3, 6))
    add("Sent", rng.randint(1, 3), sent=True)
    if rng.random() < 0.5:
        add("Drafts", 1, draft=True)
    if rng.random() < 0.6:
        add("Archive/2023", rng.randint(1, 3))
    refused: dict[str, str] = {}
    if local == CORRUPT:
        inbox = [i for i, m in enumerate(messages) if m.folder == "INBOX"]
        third = inbox[2]
        messages[third] = replace(messages[third], corrupt=CORRUPT_WORDS)
    if local == UNSELECTABLE:
        add(UNSELECTABLE_FOLDER, 2)
        refused[UNSELECTABLE_FOLDER] = UNSELECTABLE_WORDS
    if local == OVERSIZED:
        messages.append(_oversized(own, base + timedelta(days=40)))
    if local == CATCH_ALL:
        for n, who in enumerate(CATCH_ALL_RECIPIENTS):
            date = base + timedelta(days=n * 3, hours=n)
            messages.append(_message(rng, address(who), "INBOX", date, len(messages)))
    folders = sorted(
        {p for m in messages for p in _with_parents(m.folder)} | {"INBOX", "Sent", "Drafts", "Trash"}
    )
    first = local.partition(".")[0]
    return Mailbox(
        address=own,
        name=display_name(local),
        password=f"{first}-mail-secret",
        wave=wave,
        messages=tuple(messages),
        folders=tuple(folders),
        aliases=(address(first),) if "." in local and index % 3 == 0 else (),
        refused_folders=refused,
        login_refusal=LOCKED_WORDS if local == LOCKED else None,
        on_target=local != MISSING_ON_TARGET,
    )


def _with_parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _message(
    rng: random.Random,
    owner: str,
    folder: str,
    date: datetime,
    n: int,
    sent: bool = False,
    draft: bool = False,
) -> Message:
    colleague = address(rng.choice(_PEOPLE))
    sender, recipient = (owner, colleague) if sent or draft else (colleague, owner)
    subject = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 5))).capitalize()
    paragraphs = [
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
        for _ in range(rng.randint(2, 12))
    ]
    headers = [
        *([] if sent or draft else [f"Delivered-To: {owner}", f"Return-Path: <{sender}>"]),
        f"From: {display_name(sender.partition('@')[0])} <{sender}>",
        f"To: {recipient}",
        f"Subject: {subject}",
        f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S %z')}",
        f"Message-ID: <{uuid.UUID(int=rng.getrandbits(128))}@{DOMAIN}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    body = "\r\n".join(headers) + "\r\n\r\n" + "\r\n\r\n".join(paragraphs) + "\r\n"
    flags = {"\\Seen"} if rng.random() < 0.7 or sent else set()
    if draft:
        flags = {"\\Draft"}
    elif rng.random() < 0.15:
        flags.add("\\Flagged")
    elif rng.random() < 0.15:
        flags |= {"\\Answered", "$Forwarded"}
    return Message(folder, body.encode(), frozenset(flags), date)


def _oversized(owner: str, date: datetime) -> Message:
    """A sent message with a scanned contract attached: 2.6 MB, over the target's 2 MB."""
    payload = random.Random(SEED + 1).randbytes((OVERSIZED_BYTES - 1000) * 3 // 4 * 76 // 78)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    head = (
        f"From: {display_name(OVERSIZED)} <{owner}>\r\nTo: legal@partner.example\r\n"
        f"Subject: Signed contract (scan)\r\nDate: {date.strftime('%a, %d %b %Y %H:%M:%S %z')}\r\n"
        f"Message-ID: <contract-scan@{DOMAIN}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="scan"\r\n\r\n'
        "--scan\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe signed contract, scanned.\r\n"
        '--scan\r\nContent-Type: application/pdf; name="contract.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    return Message("Sent", head + encoded + b"--scan--\r\n", frozenset({"\\Seen"}), date)


# --- DNS -------------------------------------------------------------------------------------


def _zone() -> Zone:
    records: list[RecordSpec] = [
        (DOMAIN, "NS", MX_TTL, f"ns1.{DOMAIN}."),
        (f"ns1.{DOMAIN}", "A", MX_TTL, "127.0.0.1"),
        *((DOMAIN, "MX", MX_TTL, f"{10 * (i + 1)} {host}.") for i, host in enumerate(LEGACY_MX)),
        *((host, "A", MX_TTL, "127.0.0.1") for host in LEGACY_MX),
        (f"smtp.legacy.{DOMAIN}", "A", 3600, "127.0.0.1"),
        (DOMAIN, "TXT", 3600, f"v=spf1 mx a:smtp.legacy.{DOMAIN} -all"),
        (f"_dmarc.{DOMAIN}", "TXT", 3600, f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{DOMAIN}"),
    ]
    return Zone(DOMAIN, 2024050101, tuple(records))


# --- directories ------------------------------------------------------------------------------


def _legacy_directory(mailboxes: tuple[Mailbox, ...]) -> tuple[tuple[str, Attributes], ...]:
    """OpenLDAP-style: inetOrgPerson + inetLocalMailRecipient under ou=people."""
    entries: list[tuple[str, Attributes]] = [
        (LEGACY_PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["people"]}),
        (
            LEGACY_READER[0],
            {
                "objectClass": ["person"],
                "cn": ["reader"],
                "sn": ["reader"],
                "userPassword": [LEGACY_READER[1]],
            },
        ),
    ]
    for box in mailboxes:
        aliases = list(box.aliases) + ([f"@{DOMAIN}"] if box.local == CATCH_ALL else [])
        entries.append(
            (
                f"uid={box.local},{LEGACY_PEOPLE}",
                {
                    "objectClass": ["inetOrgPerson", "inetLocalMailRecipient"],
                    "uid": [box.local],
                    "cn": [box.name],
                    "sn": [box.name.split()[-1]],
                    "mail": [box.address],
                    **({"mailLocalAddress": aliases} if aliases else {}),
                },
            )
        )
    return tuple(entries)


def _target_directory(mailboxes: tuple[Mailbox, ...]) -> tuple[tuple[str, Attributes], ...]:
    """Active Directory-style: user objects with proxyAddresses and a mailbox GUID."""
    entries: list[tuple[str, Attributes]] = [
        (f"OU=Users,{TARGET_BASE}", {"objectClass": ["organizationalUnit"], "ou": ["Users"]}),
        (f"OU=Service,{TARGET_BASE}", {"objectClass": ["organizationalUnit"], "ou": ["Service"]}),
        (
            TARGET_READER[0],
            {
                "objectClass": ["person"],
                "cn": ["svc-cutover"],
                "sn": ["svc"],
                "userPassword": [TARGET_READER[1]],
            },
        ),
    ]
    for box in mailboxes:
        if not box.on_target:
            continue
        entries.append(
            (
                f"CN={box.name},{TARGET_USERS}",
                {
                    "objectClass": ["top", "person", "organizationalPerson", "user"],
                    "cn": [box.name],
                    "sAMAccountName": [box.local[:20]],
                    "userPrincipalName": [box.address],
                    "mail": [box.address],
                    "proxyAddresses": [f"SMTP:{box.address}", *(f"smtp:{a}" for a in box.aliases)],
                    "userAccountControl": ["512"],
                    "msExchMailboxGuid": [uuid.uuid5(uuid.NAMESPACE_DNS, box.address).bytes],
                },
            )
        )
    return tuple(entries)

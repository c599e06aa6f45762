"""The Graph target end to end: real Dovecot as the source, the Graph emulator as Microsoft 365,
``cutover run`` and ``cutover verify`` as an operator runs them."""

from __future__ import annotations

import email
import email.policy
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from corpus import awkward_messages, dates, message
from dovecot_lab import run_killed
from graph_lab import (
    SECRET,
    GraphLab,
    address,
    keys_held,
    make_graph_lab,
    prop,
    tenant,
)
from servers import imapfill
from servers.dovecot import DovecotServer

from lab.graph import GraphEmulator, Limits, UserConfig

FLAG_SETS = [
    (),
    ("\\Seen",),
    ("\\Seen", "\\Answered"),
    ("\\Flagged", "$Forwarded"),
    ("\\Seen", "Work", "$label1"),
    ("\\Draft",),
]


def fill(source: DovecotServer, user: str = "alice") -> int:
    """Awkward messages with varied flags and dates in INBOX, a subfolder and Sent; returns the count."""
    imapfill.create_folder(source, user, "Archive")
    imapfill.create_folder(source, user, "Archive.2023")
    imapfill.create_folder(source, user, "Sent")
    bodies = awkward_messages()
    when = dates(len(bodies) * 3)
    count = 0
    for f_index, folder in enumerate(("INBOX", "Archive.2023", "Sent")):
        for i, body in enumerate(bodies):
            flags = FLAG_SETS[(i + f_index) % len(FLAG_SETS)]
            imapfill.append(source, user, folder, body, flags, when[(i + f_index) % len(when)])
            count += 1
    return count


def subject_of(body: bytes) -> str:
    parsed = email.message_from_bytes(body, policy=email.policy.default)
    try:
        return " ".join(str(parsed.get("subject", "")).split())
    except (ValueError, IndexError):
        return ""


def expected_state(source: DovecotServer, user: str = "alice") -> Counter[tuple[str, str, bool, bool, str]]:
    """(folder, received, read, flagged, categories) of every source message."""
    folders = {"INBOX": "Inbox", "Archive.2023": "Archive/2023", "Sent": "Sent Items", "Archive": "Archive"}
    out: Counter[tuple[str, str, bool, bool, str]] = Counter()
    for folder, messages in imapfill.folder_snapshot(source, user, master=True).items():
        for _body, flags, internaldate in messages:
            lowered = {f.lower() for f in flags}
            categories = sorted(f for f in flags if not f.startswith("\\") and f != "$Forwarded")
            received = internaldate.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            out[
                (folders[folder], received, "\\seen" in lowered, "\\flagged" in lowered, ",".join(categories))
            ] += 1
    return out


def target_state(emulator: GraphEmulator, user: str = "alice") -> Counter[tuple[str, str, bool, bool, str]]:
    return Counter(
        (
            i.folder,
            i.received.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            i.is_read,
            i.flag_status == "flagged",
            ",".join(sorted(i.categories)),
        )
        for i in emulator.items(address(user))
    )


@pytest.fixture
def emulator() -> GraphEmulator:
    with GraphEmulator(tenant("alice", "bob")) as running:
        yield running


def graph_lab(tmp_path: Path, source: DovecotServer, emulator: GraphEmulator, **options: object) -> GraphLab:
    return make_graph_lab(tmp_path / "lab", source, emulator, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("route", ["import-mime", "json"])
def test_each_route_makes_one_non_draft_item_per_message_with_dates_state_and_key(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator, route: str
) -> None:
    total = fill(source_dovecot)
    lab = graph_lab(tmp_path, source_dovecot, emulator, target_extra=f'route = "{route}"')

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == total and summary["totals"]["failed"] == 0
    items = emulator.items(address("alice"))
    assert len(items) == total
    assert set(keys_held(emulator, "alice").values()) == {1} and None not in keys_held(emulator, "alice")
    # Drafts stay drafts (made by JSON on either route); everything else is a received message.
    drafts = [i for i in items if i.is_draft]
    snapshot = imapfill.folder_snapshot(source_dovecot, "alice", master=True)
    assert len(drafts) == sum(1 for box in snapshot.values() for _, flags, _ in box if "\\Draft" in flags) > 0
    assert all(i.route == "json" for i in drafts)
    made_by = {i.route for i in items if not i.is_draft}
    assert made_by == ({"importMime"} if route == "import-mime" else {"json"})
    assert target_state(emulator) == expected_state(source_dovecot)
    assert emulator.unknown_requests == []
    code, report = lab.verify()
    assert code == 0 and report["ok"] and report["compared_by"] == "kept-fields", report


def test_json_route_sets_the_properties_at_creation(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    reply = message(
        "Re: plan", "Agreed.", message_id="<r1@example.test>",
        extra="In-Reply-To: <p1@example.test>\r\nReferences: <p0@example.test> <p1@example.test>",
    )  # fmt: skip
    imapfill.append(source_dovecot, "alice", "INBOX", reply, ("\\Seen", "\\Answered"),
                    datetime(2021, 5, 4, 3, 2, 1, tzinfo=UTC))  # fmt: skip
    lab = graph_lab(tmp_path, source_dovecot, emulator, target_extra='route = "json"')

    assert lab.run()[0] == 0
    (item,) = emulator.items(address("alice"))
    assert prop(item, "Integer 0x0E07") == "1"  # read, not unsent
    assert prop(item, "SystemTime 0x0E06") == "2021-05-04T03:02:01Z"
    assert prop(item, "SystemTime 0x0039") == "2024-01-02T09:00:00Z"
    assert prop(item, "Integer 0x1081") == "102"  # replied
    assert "In-Reply-To: <p1@example.test>" in (prop(item, "String 0x007D") or "")
    assert (item.in_reply_to, item.references) == ("<p1@example.test>", "<p0@example.test> <p1@example.test>")
    assert (item.is_draft, item.is_read, item.subject, item.internet_message_id) == (
        False, True, "Re: plan", "<r1@example.test>",
    )  # fmt: skip


def test_auto_uses_import_mime_where_the_tenant_has_it_and_json_where_not(
    tmp_path: Path, source_dovecot: DovecotServer
) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("one"))
    with GraphEmulator(tenant("alice", supports_import_mime=False)) as emulator:
        lab = graph_lab(tmp_path, source_dovecot, emulator)
        assert lab.run()[0] == 0
        assert [i.route for i in emulator.items(address("alice"))] == ["json"]
    without_role = frozenset({"Mail.ReadWrite"})
    with GraphEmulator(tenant("alice", roles=without_role)) as emulator:
        lab = graph_lab(tmp_path / "2", source_dovecot, emulator)
        assert lab.run()[0] == 0
        assert [i.route for i in emulator.items(address("alice"))] == ["json"]


def test_rerun_creates_nothing(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    total = fill(source_dovecot)
    lab = graph_lab(tmp_path, source_dovecot, emulator)
    assert lab.run()[0] == 0
    creates = {k: v for k, v in emulator.request_counts(address("alice")).items() if k.startswith("create")}

    code, summary = lab.run()

    assert code == 0 and summary["kind"] == "delta" and summary["totals"]["copied"] == 0
    after = {k: v for k, v in emulator.request_counts(address("alice")).items() if k.startswith("create")}
    assert after == creates
    assert len(emulator.items(address("alice"))) == total


def test_killed_after_the_create_was_answered_then_rerun_leaves_one_item_each(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    for n in range(60):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"crash {n}", "x" * (100 + n)), ("\\Seen",))
    lab = graph_lab(tmp_path, source_dovecot, emulator, tail="[run]\nbatch_messages = 10\n")
    run_killed(lab, "after-append:2")
    assert len(emulator.items(address("alice"))) == 20  # two batches made, the second never recorded

    code, summary = lab.run()

    assert code == 0, summary
    # The unrecorded batch was found by key, not made again.
    assert (summary["totals"]["copied"], summary["totals"]["matched_by_content"]) == (40, 10)
    assert len(emulator.items(address("alice"))) == 60
    assert set(keys_held(emulator, "alice").values()) == {1}
    assert lab.verify()[0] == 0


@pytest.mark.parametrize("route", ["import-mime", "json"])
def test_a_create_whose_answer_was_dropped_is_found_not_made_twice(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator, route: str
) -> None:
    for n in range(12):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"drop {n}"), ("\\Flagged",))
    emulator.drop_after_create(count=3, mailbox=address("alice"))
    lab = graph_lab(tmp_path, source_dovecot, emulator, target_extra=f'route = "{route}"')

    code, summary = lab.run()

    assert code == 0, summary
    assert len(emulator.dropped_creates) == 3
    items = emulator.items(address("alice"))
    assert len(items) == 12 and set(keys_held(emulator, "alice").values()) == {1}
    assert all(i.flag_status == "flagged" for i in items)  # the found importMime items got their PATCH
    assert lab.verify()[0] == 0


def test_throttled_at_the_limits_every_message_arrives(tmp_path: Path, source_dovecot: DovecotServer) -> None:
    # The emulator enforces a budget far below the plan's pace: its 429s and Retry-After rule.
    limits = Limits(requests=40, request_window=2.0, concurrency=2)
    for n in range(80):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"throttle {n}"))
    with GraphEmulator(tenant("alice", limits=limits)) as emulator:
        lab = graph_lab(tmp_path, source_dovecot, emulator, target_extra='route = "json"')

        code, summary = lab.run()

        assert code == 0, summary
        assert emulator.throttled, "the budget was never reached: the test proves nothing"
        assert len(emulator.items(address("alice"))) == 80
        assert set(keys_held(emulator, "alice").values()) == {1}


def test_paced_within_the_budget_nothing_is_throttled(tmp_path: Path, source_dovecot: DovecotServer) -> None:
    limits = Limits(requests=40, request_window=2.0)
    for n in range(80):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"paced {n}"))
    with GraphEmulator(tenant("alice", limits=limits)) as emulator:
        pace = 'pace_requests = 40\npace_request_window = 2\nroute = "json"'
        lab = graph_lab(tmp_path, source_dovecot, emulator, target_extra=pace)

        assert lab.run()[0] == 0
        assert emulator.throttled == [], emulator.throttled[:3]
        assert emulator.peak_in_flight(address("alice")) <= 4
        assert len(emulator.items(address("alice"))) == 80


def test_a_missing_permission_fails_the_mailbox_and_names_it(
    tmp_path: Path, source_dovecot: DovecotServer
) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("one"))
    with GraphEmulator(tenant("alice", roles=frozenset({"Mail.ReadWrite"}))) as emulator:
        lab = graph_lab(tmp_path, source_dovecot, emulator, target_extra='route = "import-mime"')

        code, summary = lab.run()

        assert code == 1
        (box,) = summary["mailboxes"]
        assert box["state"] == "failed" and "Mail-Advanced.ReadWrite.All" in box["error"], box
        assert emulator.items(address("alice")) == []


def test_a_user_without_a_mailbox_fails_alone(tmp_path: Path, source_dovecot: DovecotServer) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("for alice"))
    imapfill.append(source_dovecot, "bob", "INBOX", message("for bob"))
    config = tenant("alice")
    with GraphEmulator(config) as emulator:
        emulator.add_user(UserConfig(address("bob"), has_mailbox=False))
        lab = graph_lab(tmp_path, source_dovecot, emulator, users=("alice", "bob"))

        code, summary = lab.run()

        assert code == 1
        boxes = {m["source"]: m for m in summary["mailboxes"]}
        assert boxes["alice"]["state"] == "ok"
        assert boxes["bob"]["state"] == "failed" and boxes["bob"]["error"], boxes["bob"]


def test_size_and_quota_refusals(tmp_path: Path, source_dovecot: DovecotServer) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("small"))
    imapfill.append(source_dovecot, "alice", "INBOX", message("too big", "y" * 200_000))
    for n in range(30):
        imapfill.append(source_dovecot, "bob", "INBOX", message(f"bob {n}", "z" * 20_000))
    with GraphEmulator(tenant()) as emulator:
        emulator.add_user(UserConfig(address("alice"), max_receive_size=100_000))
        emulator.add_user(UserConfig(address("bob"), quota_bytes=200_000))
        lab = graph_lab(tmp_path, source_dovecot, emulator, users=("alice", "bob"))

        code, summary = lab.run()

        assert code == 1
        boxes = {m["source"]: m for m in summary["mailboxes"]}
        # The message over the mailbox's limit is refused alone, with Graph's words.
        assert len(emulator.items(address("alice"))) == 1
        assert summary["totals"]["failed"] >= 1
        # Over quota: the mailbox stops.
        assert boxes["bob"]["state"] == "failed" and "ErrorQuotaExceeded" in boxes["bob"]["error"], boxes[
            "bob"
        ]
        assert len(emulator.items(address("bob"))) < 30


def test_large_attachments_go_through_upload_sessions(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    import base64

    blob = bytes(range(256)) * (5 * 4096)  # 5 MiB
    small = b"small attachment " * 100
    body = (
        "--B\nContent-Type: text/plain\n\nSee attached.\n"
        "--B\nContent-Type: application/octet-stream; name=big.bin\nContent-Disposition: attachment; filename=big.bin\n"
        "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(blob).decode() +
        "--B\nContent-Type: application/octet-stream; name=small.bin\nContent-Disposition: attachment; filename=small.bin\n"
        "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(small).decode() + "--B--"
    )  # fmt: skip
    imapfill.append(source_dovecot, "alice", "INBOX",
                    message("big", body, extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"'))  # fmt: skip
    lab = graph_lab(tmp_path, source_dovecot, emulator)

    code, summary = lab.run()

    assert code == 0, summary
    (item,) = emulator.items(address("alice"))
    assert item.route == "json"  # its MIME is over what importMime takes in one request
    assert sorted(item.attachments) == [("big.bin", blob), ("small.bin", small)]
    assert emulator.request_counts(address("alice")).get("createUploadSession", 0) >= 1 or any(
        "upload" in k.lower() for k in emulator.request_counts(address("alice"))
    )
    code, report = lab.verify("pilot", "--deep")
    assert code == 0, report


def test_verify_deep_finds_a_tampered_attachment(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    with_file = message(
        "report attached",
        "--B\nContent-Type: text/plain\n\nThe report.\n--B\nContent-Type: application/pdf; name=r.pdf\n"
        "Content-Disposition: attachment; filename=r.pdf\nContent-Transfer-Encoding: base64\n\n"
        + ("JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoK\n" * 50)
        + "--B--",
        extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"',
    )
    imapfill.append(source_dovecot, "alice", "INBOX", with_file, ("\\Seen",))
    imapfill.append(source_dovecot, "alice", "INBOX", message("plain"))
    lab = graph_lab(tmp_path, source_dovecot, emulator)
    assert lab.run()[0] == 0
    code, report = lab.verify("pilot", "--deep")
    assert code == 0, report["mailboxes"][0]["differences"]
    (with_attachment,) = [i for i in emulator.items(address("alice")) if i.attachments]

    emulator.tamper(address("alice"), with_attachment.id, attachment=(0, b"not what was sent"))

    code, report = lab.verify("pilot", "--deep")
    assert code == 1 and not report["ok"]
    (difference,) = report["mailboxes"][0]["differences"]
    assert difference["bucket"] == "different" and "attachments" in difference["reason"], difference
    assert "(made by importMime)" in difference["reason"]  # verify says which route made the item


def test_no_secret_or_token_in_output_state_or_logs(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    fill(source_dovecot)
    lab = graph_lab(tmp_path, source_dovecot, emulator)
    run = lab.cutover("run", "--plan", str(lab.plan), "--wave", "pilot", "--output", "json")
    status = lab.cutover("status", "--plan", str(lab.plan), "--output", "json")
    # A JWT: two base64url JSON objects ("eyJ" is '{"') and a dot after each. Three letters alone are
    # not a token: the service's item ids contain "eyJ" by chance (seen once in a state file).
    jwt = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
    for text in (run.stdout, run.stderr, status.stdout, status.stderr):
        assert SECRET not in text and not jwt.search(text.encode())
    for path in lab.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and not jwt.search(data), path


def test_tokens_are_renewed_before_they_expire(tmp_path: Path, source_dovecot: DovecotServer) -> None:
    # Tokens that live 2 s: the run outlives several, and no request may meet an expired one
    # (each would be a 401 and a second token fetch; two in a row fail the mailbox).
    for n in range(120):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"token {n}"))
    with GraphEmulator(tenant("alice", token_lifetime=2.0)) as emulator:
        lab = graph_lab(tmp_path, source_dovecot, emulator, tail="[run]\nbatch_messages = 10\n")

        code, summary = lab.run()

        assert code == 0, summary["mailboxes"][0].get("error")
        assert len(emulator.items(address("alice"))) == 120 and set(
            keys_held(emulator, "alice").values()
        ) == {1}
        assert all(emulator.request_counts(box).get("status:401", 0) == 0 for box in ("", address("alice")))


def test_a_refused_app_fails_the_mailbox_as_a_login_without_the_secret(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator
) -> None:
    imapfill.append(source_dovecot, "alice", "INBOX", message("one"))
    lab = graph_lab(tmp_path, source_dovecot, emulator)
    wrong = "a-wrong-secret-3c9e1f2a"

    code, summary = lab.run(env=lab.env | {"GRAPH_SECRET": wrong})

    assert code == 1
    (box,) = summary["mailboxes"]
    assert box["state"] == "failed" and "AADSTS" in box["error"], box
    assert wrong not in str(summary) and SECRET not in str(summary)
    assert emulator.items(address("alice")) == []


@pytest.mark.parametrize("retry_after", [None, 1])
def test_503s_are_waited_out_and_duplicate_nothing(
    tmp_path: Path, source_dovecot: DovecotServer, emulator: GraphEmulator, retry_after: int | None
) -> None:
    for n in range(20):
        imapfill.append(source_dovecot, "alice", "INBOX", message(f"unavailable {n}"))
    emulator.fail_with_503(count=3, mailbox=address("alice"), retry_after=retry_after)
    lab = graph_lab(tmp_path, source_dovecot, emulator)

    code, summary = lab.run()

    assert code == 0, summary["mailboxes"][0].get("error")
    assert emulator.request_counts(address("alice")).get("status:503", 0) == 3
    assert len(emulator.items(address("alice"))) == 20 and set(keys_held(emulator, "alice").values()) == {1}

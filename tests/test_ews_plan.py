"""The ``[target]`` keys of ``type = "ews"``: defaults, errors with file, line and key, Exchange Online
refused with the reason; and the folder plan's words for what Exchange renames."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runners.errors import PlanError
from runners.folders import plan_folders
from runners.model import FolderInfo, TargetLayout
from runners.plan.ews_options import DEFAULT_REQUEST_LIMIT
from runners.plan.loader import load_plan
from runners.plan.model import FolderRules

PLAN = """\
[source]
type = "imap"
host = "imap.old.test"
auth = "master"
master_user = "admin"
master_password = "env:SRC_PW"

[target]
type = "ews"
host = "mail.corp.example"
service_account = "CORP\\\\svc-migrate"
password = "env:EWS_PW"
{extra}

[mailboxes]
entries = [ {{ source = "a", target = "a@corp.example", wave = "w" }} ]
"""


def load(tmp_path: Path, extra: str = "", host: str = "mail.corp.example") -> object:
    path = tmp_path / "plan.toml"
    path.write_text(
        textwrap.dedent(PLAN.format(extra=extra)).replace("mail.corp.example", host), encoding="utf-8"
    )
    return load_plan(path)


def error(tmp_path: Path, extra: str = "", host: str = "mail.corp.example") -> PlanError:
    with pytest.raises(PlanError) as caught:
        load(tmp_path, extra, host)
    return caught.value


def test_defaults_are_exchange_servers(tmp_path: Path) -> None:
    plan = load(tmp_path)
    target = plan.target  # type: ignore[attr-defined]
    options = target.ews
    assert (target.port, options.auth, options.impersonation) == (443, "ntlm", True)
    assert options.service_account == "CORP\\svc-migrate"
    assert (options.request_limit_bytes, options.batch_items, options.max_concurrency) == (
        DEFAULT_REQUEST_LIMIT,
        100,
        27,
    )
    assert options.service_url(target.host, target.port) == "https://mail.corp.example/EWS/Exchange.asmx"
    assert "EWS_PW" in repr(target.password) and "env:" in target.password.described


@pytest.mark.parametrize("host", ["outlook.office365.com", "eur.outlook.office365.com", "outlook.office.com"])
def test_exchange_online_is_refused_with_the_reason(tmp_path: Path, host: str) -> None:
    found = error(tmp_path, host=host)
    assert found.key == "target.host" and found.line == 10
    assert "2026-10-01" in found.message and "April 2027" in found.message and '"graph"' in found.message


def test_an_ews_url_on_exchange_online_is_refused_too(tmp_path: Path) -> None:
    found = error(tmp_path, 'ews_url = "https://outlook.office365.com/EWS/Exchange.asmx"')
    assert found.key == "target.ews_url" and "April 2027" in found.message


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('auth = "master"', "target.auth", "is not one of basic | ntlm | oauth"),
        ("request_limit_bytes = 1000", "target.request_limit_bytes", "at least 262144"),
        ("batch_items = 0", "target.batch_items", "between 1 and 1000"),
        ('ews_url = "http://mail.corp.example/EWS/Exchange.asmx"', "target.ews_url", "https URL"),
        ('auth = "oauth"', "target.oauth_client_id", "missing"),
        ('oauth_tenant_id = "t"', "target.oauth_tenant_id", 'only used with auth = "oauth"'),
        ('master_user = "admin"', "target.master_user", 'only used with auth = "master"'),
    ],
)
def test_wrong_keys_name_file_line_and_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    found = error(tmp_path, extra)
    assert found.key == key and words in found.message
    assert found.line is not None and str(found).startswith(f"{found.path}:{found.line}:")


def test_ews_keys_belong_to_ews_only(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(
        PLAN.format(extra="")
        .replace('type = "ews"', 'type = "imap"')
        .replace('service_account = "CORP\\\\svc-migrate"\n', "impersonation = false\n"),
        encoding="utf-8",
    )
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert (
        caught.value.key == "target.impersonation" and 'only applies to type = "ews"' in caught.value.message
    )


def test_a_lower_request_limit_lowers_the_batch_bytes(tmp_path: Path) -> None:
    plan = load(tmp_path, "request_limit_bytes = 4194304\nbatch_items = 20")
    assert plan.target.ews.request_limit_bytes == 4194304  # type: ignore[attr-defined]


def test_the_folder_plan_says_what_exchange_renames_and_why() -> None:
    folders = [
        FolderInfo(n, tuple(n.split("/")), "/") for n in ("INBOX", "Outbox", "Work", "work", "work/a", "Sent")
    ]
    layout = TargetLayout(
        "/", "", {"\\Sent": "Sent Items"}, reserved={"outbox": "its items are sent"}, case_insensitive=True
    )

    planned = {m.source.raw_name: m for m in plan_folders(folders, FolderRules(), layout)}

    assert planned["Outbox"].target_wire == "Outbox (migrated)"
    assert "keeps for itself (its items are sent)" in planned["Outbox"].notes[0]
    assert (planned["Work"].target_wire, planned["work"].target_wire, planned["work/a"].target_wire) == (
        "Work", "work (2)", "work (2)/a"
    )  # fmt: skip
    assert "case-insensitively" in planned["work"].notes[0] and planned["work/a"].notes == ()
    assert (planned["INBOX"].target_wire, planned["Sent"].target_wire) == ("INBOX", "Sent Items")
    # An IMAP target is untouched: no reserved names, case-sensitive.
    imap = {
        m.source.raw_name: m.target_wire for m in plan_folders(folders, FolderRules(), TargetLayout("/", ""))
    }
    assert (imap["Outbox"], imap["work"]) == ("Outbox", "work")

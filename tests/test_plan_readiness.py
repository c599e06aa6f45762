"""The readiness sections of a plan: loaded into typed settings, errors with file, line and key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from runners.errors import PlanError
from runners.plan.loader import load_plan

BASE = """
[source]
type = "imap"
host = "127.0.0.1"
security = "plain"
auth = "password"

[target]
type = "imap"
host = "127.0.0.1"
security = "plain"
auth = "password"

[mailboxes]
entries = [ { source = "a", target = "a@new.test", wave = "w", source_password = "x", target_password = "y" } ]
"""

FULL = """
[dns]
domains = ["New.Test."]
resolver = "127.0.0.1:5353"
nameservers = { "new.test" = ["127.0.0.1:5301", "127.0.0.2"] }
legacy_mx = ["mx*.old.test"]
target_mx = ["*.mail.new.test"]
spf_includes = ["spf.new.test"]
max_ttl = 600

[directory.source]
url = "ldap://127.0.0.1:3890"
base = "ou=people,dc=old"
bind_password = "env:LDAP_PW"
attributes = { aliases = "mailAlternateAddress" }

[directory.target]
url = "ldaps://127.0.0.1:6360"
base = "dc=new"

[capacity]
endpoints = { ews = "https://mail.new.test/EWS/Exchange.asmx" }
smtp_hubs = ["hub.new.test:25", "hub2.new.test"]
mailbox_quota_bytes = 1000000
databases = [ { name = "DB1", storage_bytes = 5000000, mailboxes = ["*@new.test"] } ]
window_hours = 8
addresses = { "mail.new.test" = "127.0.0.1" }

[checks]
timeout = 30
per_server = 2
scan = false

[[waivers]]
check = "DNS-TTL-004"
object = "new.test"
key = "mx"
reason = "lowered on Friday"
expires = 2026-12-31
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_every_readiness_section_loads(tmp_path: Path) -> None:
    readiness = load_plan(write(tmp_path, BASE + FULL)).readiness
    assert (
        readiness.dns is not None and readiness.dns.domains == ("new.test",) and readiness.dns.max_ttl == 600
    )
    assert readiness.dns.nameservers == {"new.test": ("127.0.0.1:5301", "127.0.0.2")}
    assert (
        readiness.source_directory is not None
        and readiness.source_directory.preset == "inetlocalmailrecipient"
    )
    assert readiness.target_directory is not None and readiness.target_directory.preset == "ad"
    assert repr(readiness.source_directory.bind_password) == "Secret(env:LDAP_PW)"
    assert readiness.capacity.smtp_hubs == ("hub.new.test:25", "hub2.new.test")
    assert readiness.capacity.databases[0].mailboxes == ("*@new.test",)
    assert (readiness.timeout, readiness.per_server, readiness.scan) == (30.0, 2, False)
    (waiver,) = readiness.waivers
    assert (waiver.check, waiver.object, waiver.key, waiver.expires) == (
        "DNS-TTL-004",
        "new.test",
        "mx",
        date(2026, 12, 31),
    )


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (("max_ttl = 600", "max_tll = 600"), "dns.max_tll", "did you mean"),
        (
            ('url = "ldap://127.0.0.1:3890"', 'url = "http://127.0.0.1:3890"'),
            "directory.source.url",
            "ldap://",
        ),
        (('ews = "https://', 'ews = "http://'), "capacity.endpoints", "https:// URL"),
        (("expires = 2026-12-31", 'expires = "soon"'), "waivers[0].expires", "expected a date"),
        (('resolver = "127.0.0.1:5353"', 'resolver = "127.0.0.1:dns"'), "dns.resolver", "host:port"),
        (
            ('"mail.new.test" = "127.0.0.1"', '"mail.new.test" = "mail.old"'),
            "capacity.addresses",
            "IP address",
        ),
    ],
)
def test_errors_name_the_line_and_key(tmp_path: Path, change: tuple[str, str], key: str, words: str) -> None:
    text = BASE + FULL.replace(*change)
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, text))
    error = caught.value
    assert error.key == key and words in error.message
    assert error.line is not None and change[1].split("=")[0].strip() in text.splitlines()[error.line - 1]


def test_relative_secret_files_are_found_beside_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ldap.pw").write_text("s3cret\n")
    plan = write(
        tmp_path,
        BASE + FULL.replace('bind_password = "env:LDAP_PW"', 'bind_password = "file:secrets/ldap.pw"'),
    )
    monkeypatch.chdir("/")  # an operator running cutover from anywhere
    directory = load_plan(plan).readiness.source_directory
    assert directory is not None and directory.bind_password is not None
    assert directory.bind_password.reveal() == "s3cret"

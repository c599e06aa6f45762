"""The switch's DNS change against real Knot DNS: a primary taking TSIG-signed updates, a secondary
transferring from it (tests/servers/knot.py), both on loopback port 53."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.resolver
import pytest
from servers.knot import (
    LEGACY_MX,
    TARGET_AUTODISCOVER,
    TARGET_MX,
    TSIG_ALGORITHM,
    TSIG_NAME,
    TSIG_SECRET,
    ZONE,
    KnotPair,
    KnotServer,
    find_knotd,
)

from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.plan.secret import Secret
from runners.plan.switch_model import DomainRecords, HostPort, MxRecord, SwitchDns, TsigSettings
from runners.switch.dns_confirm import Confirmation, confirm, servers_by_zone
from runners.switch.dns_manual import instructions, manual_changes
from runners.switch.dns_query import AuthServer, served
from runners.switch.dns_update import DnsUpdateRefused, Primary, apply_records, pending_changes, send_update
from runners.switch.records import DesiredRRset, rdata_texts, records_for

SECRET_ENV = "CUTOVER_TEST_TSIG_SECRET"
APEX = dns.name.from_text(ZONE)
AUTODISCOVER = dns.name.from_text(f"autodiscover.{ZONE}.")
LEGACY_MX_TEXTS = ("10 mx.legacy.test.", "20 mx2.legacy.test.")


@pytest.fixture
def knot() -> Iterator[KnotPair]:
    if find_knotd() is None:
        pytest.fail("knotd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    pair = KnotPair.create().start()
    yield pair
    print(pair.log_text())  # shown only when the test failed
    pair.stop()


@pytest.fixture(autouse=True)
def _tsig_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, TSIG_SECRET)


def switch_dns(pair: KnotPair, *, secret: str = f"env:{SECRET_ENV}", key: str = TSIG_NAME) -> SwitchDns:
    return SwitchDns(
        domains=(DomainRecords(ZONE, f"{ZONE}.", (MxRecord(10, TARGET_MX),), TARGET_AUTODISCOVER),),
        primary=HostPort(pair.primary.address, 53),
        tsig=TsigSettings(key, TSIG_ALGORITHM, Secret(secret)),
        ttl=300,
        timeout=3.0,
    )


def primary_of(settings: SwitchDns) -> Primary:
    primary = Primary.from_plan(settings)
    assert primary is not None
    return primary


def both(pair: KnotPair) -> dict[dns.name.Name, tuple[AuthServer, ...]]:
    return {
        APEX: (AuthServer(pair.primary.address, name="ns1"), AuthServer(pair.secondary.address, name="ns2"))
    }


def mx_on(server: KnotServer) -> tuple[str, ...]:
    return rdata_texts(served(AuthServer(server.address), APEX, dns.rdatatype.MX, 2.0))


def wait_for_all(desired: tuple[DesiredRRset, ...], pair: KnotPair, **options: object) -> Confirmation:
    return confirm(desired, both(pair), timeout=30.0, interval=0.05, **options)  # type: ignore[arg-type]


def test_update_is_applied_and_confirmed_on_both_servers(knot: KnotPair) -> None:
    settings = switch_dns(knot)
    desired = records_for(settings.domains, settings.ttl)

    result = apply_records(primary_of(settings), desired)

    assert [c.desired.label for c in result.changes] == [f"{ZONE}. MX", f"autodiscover.{ZONE}. CNAME"]
    assert result.changes[0].previous == LEGACY_MX_TEXTS  # what a rollback makes true again
    assert rdata_texts(result.changes[1].before[dns.rdatatype.A]) == ("192.0.2.10",)
    confirmation = wait_for_all(desired, knot)
    assert confirmation.confirmed, confirmation.summary()
    assert [str(s.server) for s in confirmation.servers] == [
        f"ns1 ({knot.primary.address}:53)",
        f"ns2 ({knot.secondary.address}:53)",
    ]
    for server in (knot.primary, knot.secondary):
        assert mx_on(server) == ("10 mx.target.test.",)
        target = served(AuthServer(server.address), AUTODISCOVER, dns.rdatatype.CNAME, 2.0)
        assert rdata_texts(target) == (TARGET_AUTODISCOVER,)
        # The legacy's A record made way for the CNAME (a server keeps neither beside the other).
        assert served(AuthServer(server.address), AUTODISCOVER, dns.rdatatype.A, 2.0) is None
    assert knot.secondary.serial() == knot.primary.serial() == 2  # one UPDATE, one serial


def test_a_rerun_sends_nothing_when_the_records_are_already_true(knot: KnotPair) -> None:
    settings = switch_dns(knot)
    desired = records_for(settings.domains, settings.ttl)
    apply_records(primary_of(settings), desired)
    serial = knot.primary.serial()

    again = apply_records(primary_of(settings), desired)

    assert not again.sent and again.changes == ()
    assert knot.primary.serial() == serial  # no UPDATE reached the zone
    assert wait_for_all(desired, knot).confirmed


def test_the_confirm_servers_default_to_the_zones_ns_set(knot: KnotPair) -> None:
    desired = records_for(switch_dns(knot).domains, 300)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [knot.primary.address]  # authoritative for the zone and its glue

    servers = servers_by_zone(desired, {}, resolver)

    assert servers == {
        APEX: (
            AuthServer(knot.primary.address, 53, f"ns1.{ZONE}."),
            AuthServer(knot.secondary.address, 53, f"ns2.{ZONE}."),
        )
    }


@pytest.mark.parametrize(
    ("secret", "key", "said"),
    [
        pytest.param(
            "c2VjcmV0IHRoYXQgaXMgbm90IHRoZSBrZXk=", TSIG_NAME, "NOTAUTH (TSIG BADSIG)", id="wrong-secret"
        ),
        pytest.param(f"env:{SECRET_ENV}", "someone-else.", "NOTAUTH (TSIG BADKEY)", id="unknown-key"),
    ],
)
def test_a_wrongly_signed_update_is_refused_with_the_servers_words(
    knot: KnotPair, secret: str, key: str, said: str
) -> None:
    settings = switch_dns(knot, secret=secret, key=key)

    with pytest.raises(DnsUpdateRefused) as refused:
        apply_records(primary_of(settings), records_for(settings.domains, 300))

    assert refused.value.server_text == said
    assert not refused.value.prerequisite_failed and not refused.value.retryable
    assert mx_on(knot.primary) == LEGACY_MX_TEXTS


def test_an_unsigned_update_is_refused_with_the_servers_words(knot: KnotPair) -> None:
    settings = switch_dns(knot)
    unsigned = Primary(AuthServer(knot.primary.address), key=None, timeout=3.0)

    with pytest.raises(DnsUpdateRefused) as refused:
        apply_records(unsigned, records_for(settings.domains, 300))

    assert refused.value.server_text == "NOTAUTH"  # Knot's rcode for an update no ACL allows
    assert f"{knot.primary.address}:53 UPDATE {ZONE}." in str(refused.value)
    assert mx_on(knot.primary) == LEGACY_MX_TEXTS


def test_a_concurrent_change_fails_the_prerequisite_and_is_not_overwritten(knot: KnotPair) -> None:
    settings = switch_dns(knot)
    primary = primary_of(settings)
    changes = pending_changes(primary.server, records_for(settings.domains, 300), 3.0)
    # Someone else changes the MX set between our read and our update.
    knot.primary.knotc("zone-begin", ZONE)
    knot.primary.knotc("zone-set", ZONE, "@", "300", "MX", "5", "mx.someone-else.test.")
    knot.primary.knotc("zone-commit", ZONE)

    with pytest.raises(DnsUpdateRefused) as refused:
        send_update(primary, APEX, changes)

    assert refused.value.server_text == "NXRRSET"  # the MX set as read no longer exists
    assert refused.value.prerequisite_failed and refused.value.retryable
    assert mx_on(knot.primary) == ("10 mx.legacy.test.", "20 mx2.legacy.test.", "5 mx.someone-else.test.")


def test_a_lagging_secondary_is_named_until_it_catches_up(knot: KnotPair) -> None:
    settings = switch_dns(knot)
    desired = records_for(settings.domains, 300)
    knot.secondary.freeze()  # it takes the NOTIFY but holds the transfer
    apply_records(primary_of(settings), desired)
    seen: list[Confirmation] = []

    def progress(state: Confirmation) -> None:
        seen.append(state)
        knot.secondary.thaw()

    confirmation = wait_for_all(desired, knot, progress=progress)

    assert confirmation.confirmed, confirmation.summary()
    waiting = seen[0]
    assert not waiting.confirmed
    assert [str(s.server) for s in waiting.lagging] == [f"ns2 ({knot.secondary.address}:53)"]
    assert {m.label: m.serves for m in waiting.lagging[0].mismatches}[f"{ZONE}. MX"] == LEGACY_MX_TEXTS
    said = waiting.summary()
    assert (
        said.startswith("waiting for 1 of 2 servers") and f"\n  ns2 ({knot.secondary.address}:53): " in said
    )
    assert f"{ZONE}. MX: serves 10 mx.legacy.test., 20 mx2.legacy.test. (wanted 10 mx.target.test.)" in said


def test_a_secondary_that_never_catches_up_is_named_with_what_it_serves(knot: KnotPair) -> None:
    settings = switch_dns(knot)
    desired = records_for(settings.domains, 300)
    knot.secondary.freeze()
    apply_records(primary_of(settings), desired)
    rounds: list[Confirmation] = []

    confirmation = confirm(desired, both(knot), timeout=1.0, interval=0.1, progress=rounds.append)

    assert not confirmation.confirmed
    assert rounds and not any(r.confirmed for r in rounds)  # it waited, and said so each round
    (lagging,) = confirmation.lagging
    assert lagging.server.address == knot.secondary.address
    assert {m.label: m.serves for m in lagging.mismatches} == {
        f"{ZONE}. MX": LEGACY_MX_TEXTS,
        f"autodiscover.{ZONE}. CNAME": (),
    }
    assert "autodiscover.switch.test. CNAME: serves nothing (wanted autodiscover.target.test.)" in (
        lagging.describe()
    )


def operator_applies(server: KnotServer, text: str) -> None:
    """What an operator does with the printed lines: remove the commented ones, add the others."""
    server.knotc("zone-begin", ZONE)
    for line in text.splitlines():
        removing = line.startswith("; remove: ")
        if line.startswith(";") and not removing:
            continue
        owner, ttl, _cls, kind, *rdata = line.removeprefix("; remove: ").split()
        if removing:
            server.knotc("zone-unset", ZONE, owner, kind, *rdata)
        else:
            server.knotc("zone-set", ZONE, owner, ttl, kind, *rdata)
    server.knotc("zone-commit", ZONE)


def test_without_a_key_the_exact_records_are_printed_and_awaited(knot: KnotPair) -> None:
    desired = records_for(switch_dns(knot).domains, 300)
    changes = manual_changes(AuthServer(knot.secondary.address), desired, 3.0)

    text = instructions(changes)

    assert text == (
        f"; zone {ZONE}.: the records the switch needs (then bump the SOA serial)\n"
        f"; remove: {ZONE}. 300 IN MX 10 {LEGACY_MX}\n"
        f"; remove: {ZONE}. 300 IN MX 20 mx2.legacy.test.\n"
        f"{ZONE}. 300 IN MX 10 {TARGET_MX}\n"
        f"; remove: autodiscover.{ZONE}. 300 IN A 192.0.2.10\n"
        f"autodiscover.{ZONE}. 300 IN CNAME {TARGET_AUTODISCOVER}\n"
    )
    rounds: list[Confirmation] = []

    def progress(state: Confirmation) -> None:
        if not rounds:
            assert len(state.lagging) == 2  # nothing changed anywhere yet: both are named
            operator_applies(knot.primary, text)
        rounds.append(state)

    confirmation = wait_for_all(desired, knot, progress=progress)

    assert confirmation.confirmed, confirmation.summary()
    assert mx_on(knot.secondary) == ("10 mx.target.test.",)
    assert instructions(manual_changes(AuthServer(knot.secondary.address), desired, 3.0)).startswith(
        "; every record is already as the switch wants it"
    )


def test_the_tsig_secret_never_appears_in_any_output(
    knot: KnotPair, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "d3Jvbmcgc2VjcmV0IGZvciB0aGUgc3dpdGNo"  # a literal in the plan: shown as <literal>
    refused_settings = switch_dns(knot, secret=wrong)
    with pytest.raises(DnsUpdateRefused) as refused:
        apply_records(primary_of(refused_settings), records_for(refused_settings.domains, 300))
    print(refused.value, repr(refused.value), refused_settings, primary_of(refused_settings))
    settings = switch_dns(knot)
    desired = records_for(settings.domains, 300)
    result = apply_records(primary_of(settings), desired)
    print(result, settings, wait_for_all(desired, knot, progress=lambda s: print(s.summary())).summary())
    logging.getLogger("cutover").info("switch %s %s", settings, refused.value)

    out = capsys.readouterr()
    for text in (out.out, out.err, caplog.text):
        assert TSIG_SECRET not in text and wrong not in text
    assert "Secret(env:CUTOVER_TEST_TSIG_SECRET)" in out.out and "Secret(<literal>)" in out.out


# --- the plan's [switch] section ----------------------------------------------------------------

PLAN_HEAD = """[source]
type = "imap"
host = "127.0.0.1"
port = 1143
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:MP"

[target]
type = "imap"
host = "127.0.0.1"
port = 2143
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:MP"

[mailboxes]
entries = [{ source = "alice@switch.test", target = "alice@switch.test", wave = "w1" }]
"""


def write_plan(tmp_path: Path, switch: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN_HEAD + switch)
    return path


def test_the_plan_drives_an_update_and_its_confirmation(knot: KnotPair, tmp_path: Path) -> None:
    plan = load_plan(
        write_plan(
            tmp_path,
            f"""
[switch]
confirm_timeout = 30
confirm_interval = 0.05

[switch.dns]
primary = "{knot.primary.address}:53"
tsig_key = "{TSIG_NAME}"
tsig_secret = "env:{SECRET_ENV}"
nameservers = {{ "{ZONE}" = ["{knot.primary.address}", "{knot.secondary.address}:53"] }}

[switch.dns.domains."{ZONE}"]
mx = [{{ host = "{TARGET_MX}", preference = 10 }}, {{ host = "mx-b.target.test", preference = 20 }}]
""",
        )
    )
    assert plan.switch is not None and plan.switch.dns is not None
    dns_settings = plan.switch.dns
    desired = records_for(dns_settings.domains, dns_settings.ttl)

    apply_records(primary_of(dns_settings), desired)
    confirmation = confirm(
        desired,
        servers_by_zone(desired, dns_settings.nameservers),
        timeout=plan.switch.confirm_timeout,
        interval=plan.switch.confirm_interval,
    )

    assert confirmation.confirmed, confirmation.summary()
    assert mx_on(knot.secondary) == ("10 mx.target.test.", "20 mx-b.target.test.")


@pytest.mark.parametrize(
    ("switch", "error"),
    [
        (
            "[switch]\nconfirm_timout = 3\n",
            ':23: [switch.confirm_timout] unknown key "confirm_timout" in [switch] (did you mean "confirm_timeout"?)',
        ),
        (
            '[switch.dns]\ntsig_key = "k."\n[switch.dns.domains."a.test"]\nmx = [{ host = "mx" }]\n',
            ':23: [switch.dns.tsig_key] a TSIG key needs the "primary" that takes the update',
        ),
        (
            '[switch.dns]\nprimary = "ns:53"\ntsig_key = "k."\n[switch.dns.domains."a.test"]\nmx = [{ host = "mx" }]\n',
            ':24: [switch.dns.tsig_key] [switch.dns] has "tsig_key" but no "tsig_secret"',
        ),
        (
            '[switch.dns]\nprimary = "ns:x"\n[switch.dns.domains."a.test"]\nmx = [{ host = "mx" }]\n',
            ':23: [switch.dns.primary] "ns:x" is not host or host:port',
        ),
        ('[switch.dns]\nprimary = "ns"\n', ":22: [switch.dns] [switch.dns] names no domain"),
        (
            '[switch.dns.domains."a.test"]\nmx = [{ host = "mx", prefrence = 5 }]\n',
            ':23: [switch.dns.domains."a.test".mx[0].prefrence] unknown key "prefrence"',
        ),
        (
            '[switch.dns.domains."a.test"]\nzone = "b.test"\nmx = [{ host = "mx" }]\n',
            ':23: [switch.dns.domains."a.test".zone] "b.test" does not hold a.test',
        ),
        (
            '[switch.dns]\nprimary = "ns"\ntsig_key = "k."\ntsig_secret = "env:X"\ntsig_algorithm = "hmac-md5"\n'
            '[switch.dns.domains."a.test"]\nmx = [{ host = "mx" }]\n',
            ':26: [switch.dns.tsig_algorithm] "hmac-md5" is not one of hmac-sha256',
        ),
        (
            '[switch.directory]\nurl = "ldap://h"\nbase = "dc=x"\nattribute = "mailHost"\nlegacy_value = "a"\n'
            'target_value = "a"\n',
            ":27: [switch.directory.target_value] is the same as legacy_value",
        ),
        (
            '[switch.directory]\nurl = "http://h"\n',
            ':23: [switch.directory.url] "http://h" must start with ldap://',
        ),
    ],
)
def test_plan_errors_name_file_line_and_key(tmp_path: Path, switch: str, error: str) -> None:
    path = write_plan(tmp_path, "\n" + switch)

    with pytest.raises(PlanError) as failed:
        load_plan(path)

    assert str(failed.value).startswith(str(path)) and error in str(failed.value)


def test_the_switch_example_in_the_docs_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "plan.md").read_text(encoding="utf-8")
    example = doc.split("## `[switch]`", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]

    plan = load_plan(write_plan(tmp_path, "\n" + example))

    assert plan.switch is not None and plan.switch.dns is not None and plan.switch.directory is not None
    dns_settings = plan.switch.dns
    assert dns_settings.primary == HostPort("192.0.2.53", 53)
    assert dns_settings.tsig == TsigSettings("cutover-switch.", "hmac-sha256", Secret("env:CUTOVER_TSIG"))
    assert dns_settings.nameservers == {
        "example.com.": (HostPort("192.0.2.53", 53), HostPort("198.51.100.7", 53))
    }
    (domain,) = dns_settings.domains
    assert domain == DomainRecords(
        "example.com",
        "example.com.",
        (MxRecord(10, "mx1.target.example."), MxRecord(20, "mx2.target.example.")),
        "autodiscover.outlook.com.",
    )
    assert [r.zone_lines() for r in records_for(dns_settings.domains, dns_settings.ttl)] == [
        ["example.com. 300 IN MX 10 mx1.target.example.", "example.com. 300 IN MX 20 mx2.target.example."],
        ["autodiscover.example.com. 300 IN CNAME autodiscover.outlook.com."],
    ]
    directory = plan.switch.directory
    assert (directory.attribute, directory.legacy_value, directory.target_value, directory.match) == (
        "mailHost", "imap.old.example.com", "imap.new.example.com", "mail",
    )  # fmt: skip
    assert directory.bind_password == Secret(f"file:{tmp_path}/secrets/ldap-switch.pw")

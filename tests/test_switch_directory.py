"""The directory's half of the switch against a real slapd (tests/servers/slapd.py): the routing
attribute (``mailHost`` of inetLocalMailRecipient) set per user, read back, idempotent, rolled back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
from servers.slapd import LEGACY_SUFFIX, SlapdServer, find_slapd, ldif_entry, legacy_person
from servers.tlsca import Leaf

from runners.errors import AuthError
from runners.plan.loader import load_plan
from runners.plan.secret import Secret
from runners.plan.switch_model import RoutingDirectory
from runners.switch import directory as directory_module
from runners.switch.directory import route_users

PEOPLE = f"ou=switch,{LEGACY_SUFFIX}"
SWITCH_DN = f"cn=switch,{LEGACY_SUFFIX}"
SWITCH_PASSWORD = "switch-writer-secret"
PASSWORD_ENV = "CUTOVER_TEST_SWITCH_BIND"
LEGACY_HOST, TARGET_HOST = "imap.legacy.test", "imap.target.test"


class RoutingSlapd(SlapdServer):
    """The suite's slapd, with an account that may write ``mailHost`` (and nothing else), except on
    fay's entry, where an administrator locked it."""

    def _render_conf(self, leaf: Leaf) -> str:
        acl = (
            f'access to dn.exact="uid=fay,{PEOPLE}" attrs=mailHost by users read by * none\n'
            f'access to attrs=mailHost by dn.exact="{SWITCH_DN}" write by users read by * none\n'
        )
        conf = super()._render_conf(leaf)
        return conf.replace("access to attrs=userPassword", acl + "access to attrs=userPassword", 1)


def routing_ldif() -> str:
    people = [
        legacy_person(PEOPLE, "ann", "ann@switch.test", mailHost=[LEGACY_HOST]),
        legacy_person(PEOPLE, "ben", "ben@switch.test", mailHost=[LEGACY_HOST]),
        legacy_person(PEOPLE, "cat", "cat@switch.test"),  # no routing attribute yet
        legacy_person(PEOPLE, "dan", "dan@switch.test", mailHost=[TARGET_HOST]),  # already moved
        legacy_person(PEOPLE, "fay", "fay@switch.test", mailHost=[LEGACY_HOST]),  # locked by an ACL
        legacy_person(PEOPLE, "gus", "gus@switch.test", classes=()),  # mailHost not allowed here
        legacy_person(PEOPLE, "shared1", "shared@switch.test", mailHost=[LEGACY_HOST]),
        legacy_person(PEOPLE, "shared2", "shared@switch.test", mailHost=[LEGACY_HOST]),
    ]
    return "".join(
        [
            ldif_entry(PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["switch"]}),
            ldif_entry(SWITCH_DN, {"objectClass": ["organizationalRole", "simpleSecurityObject"],
                                   "cn": ["switch"], "userPassword": [SWITCH_PASSWORD]}),
            *people,
        ]
    )  # fmt: skip


@pytest.fixture
def slapd() -> Iterator[SlapdServer]:
    if find_slapd() is None:
        pytest.fail("slapd is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    server = RoutingSlapd(routing_ldif()).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _bind_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, SWITCH_PASSWORD)


def routing(slapd: SlapdServer, *, password: str = f"env:{PASSWORD_ENV}") -> RoutingDirectory:
    return RoutingDirectory(
        url=slapd.url,
        base=PEOPLE,
        attribute="mailHost",
        legacy_value=LEGACY_HOST,
        target_value=TARGET_HOST,
        bind_dn=SWITCH_DN,
        bind_password=Secret(password),
        timeout=10.0,
    )


def test_switch_sets_the_attribute_and_reads_it_back(slapd: SlapdServer) -> None:
    result = route_users(routing(slapd), ["ann@switch.test", "cat@switch.test"], "target")

    assert result.confirmed and result.value == TARGET_HOST
    ann, cat = result.users
    assert (ann.outcome, ann.dn, ann.before, ann.after) == (
        "changed", f"uid=ann,{PEOPLE}", (LEGACY_HOST,), (TARGET_HOST,)
    )  # fmt: skip
    assert (cat.outcome, cat.before, cat.after) == ("changed", (), (TARGET_HOST,))
    # Another client sees it too: the value is in the directory, not only in our answer.
    again = route_users(routing(slapd), ["ann@switch.test", "cat@switch.test"], "target")
    assert [u.outcome for u in again.users] == ["already", "already"]


def test_a_rerun_modifies_nobody_already_at_the_value(slapd: SlapdServer) -> None:
    route_users(routing(slapd), ["ann@switch.test"], "target")
    modifies_before = slapd.log_text().count(" MOD dn=")
    assert modifies_before == 1  # slapd -d stats logs each modify: ann's

    result = route_users(routing(slapd), ["ann@switch.test", "dan@switch.test"], "target")

    assert [(u.outcome, u.after) for u in result.users] == [("already", (TARGET_HOST,))] * 2
    assert slapd.log_text().count(" MOD dn=") == modifies_before  # no modify reached the server


def test_rollback_sets_the_legacy_value_back(slapd: SlapdServer) -> None:
    users = ["ann@switch.test", "ben@switch.test", "cat@switch.test"]
    route_users(routing(slapd), users, "target")

    back = route_users(routing(slapd), users, "legacy")

    assert back.confirmed and back.value == LEGACY_HOST
    assert [(u.outcome, u.before, u.after) for u in back.users] == [
        ("changed", (TARGET_HOST,), (LEGACY_HOST,))
    ] * 3


def test_a_refused_modify_keeps_the_servers_words_per_user(slapd: SlapdServer) -> None:
    addresses = [
        "fay@switch.test",
        "gus@switch.test",
        "ben@switch.test",
        "shared@switch.test",
        "no@switch.test",
    ]

    result = route_users(routing(slapd), addresses, "target")

    fay, gus, ben, shared, nobody = result.users
    assert not result.confirmed and result.not_done == (fay, gus, shared, nobody)
    assert (fay.outcome, fay.server_text) == ("refused", "insufficientAccessRights (50)")
    assert gus.outcome == "refused"
    assert gus.server_text == "objectClassViolation (65): attribute 'mailHost' not allowed"
    assert ben.outcome == "changed"  # one user's refusal doesn't stop the others
    assert shared.outcome == "ambiguous" and shared.server_text is not None
    assert f"uid=shared1,{PEOPLE}" in shared.server_text and f"uid=shared2,{PEOPLE}" in shared.server_text
    assert nobody.outcome == "not-found"
    assert route_users(routing(slapd), ["fay@switch.test"], "target").users[0].after == ()  # untouched


def test_a_value_changed_between_read_and_modify_is_refused_not_overwritten(
    slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = directory_module._Directory.replace

    def someone_else_first(
        self: object, dn: str, attribute: str, before: tuple[str, ...], value: str
    ) -> str | None:
        # Another administrator moves ann elsewhere after the switch read her entry.
        with ldap3.Connection(slapd.url, SWITCH_DN, SWITCH_PASSWORD, auto_bind=True) as other:
            assert other.modify(dn, {attribute: [(ldap3.MODIFY_REPLACE, ["imap.elsewhere.test"])]})
        return real_replace(self, dn, attribute, before, value)  # type: ignore[arg-type]

    monkeypatch.setattr(directory_module._Directory, "replace", someone_else_first)
    (ann,) = route_users(routing(slapd), ["ann@switch.test"], "target").users

    assert (ann.outcome, ann.before) == ("refused", (LEGACY_HOST,))
    assert ann.server_text is not None and ann.server_text.startswith("noSuchAttribute (16)")
    with ldap3.Connection(slapd.url, SWITCH_DN, SWITCH_PASSWORD, auto_bind=True) as reader:
        reader.search(f"uid=ann,{PEOPLE}", "(objectClass=*)", ldap3.BASE, attributes=["mailHost"])
        assert reader.entries[0].mailHost.values == ["imap.elsewhere.test"]  # the other change stands


def test_the_bind_password_never_appears_in_any_output(
    slapd: SlapdServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-switch-password"
    with pytest.raises(AuthError) as refused:
        route_users(routing(slapd, password=wrong), ["ann@switch.test"], "target")
    print(refused.value, repr(refused.value), routing(slapd, password=wrong))
    result = route_users(routing(slapd), ["ann@switch.test", "gus@switch.test"], "target")
    print(result, routing(slapd))
    logging.getLogger("cutover").info("switch %s %s", result, refused.value)

    assert refused.value.server_text == "invalidCredentials (49)"
    out = capsys.readouterr()
    for text in (out.out, out.err, caplog.text):
        assert SWITCH_PASSWORD not in text and wrong not in text
    assert "Secret(<literal>)" in out.out and f"Secret(env:{PASSWORD_ENV})" in out.out


def test_the_plan_drives_the_switch_and_its_rollback(slapd: SlapdServer, tmp_path: Path) -> None:
    (tmp_path / "bind.secret").write_text(SWITCH_PASSWORD + "\n")
    (tmp_path / "bind.secret").chmod(0o600)
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(
        f"""[source]
type = "maildir"
path = "/var/mail/{{user}}/Maildir"

[target]
type = "imap"
host = "127.0.0.1"
port = 2143
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:MP"

[mailboxes]
entries = [{{ source = "ann", target = "ann@switch.test", wave = "w1" }}]

[switch.directory]
url = "{slapd.url}"
base = "{PEOPLE}"
bind_dn = "{SWITCH_DN}"
bind_password = "file:bind.secret"
attribute = "mailHost"
legacy_value = "{LEGACY_HOST}"
target_value = "{TARGET_HOST}"
"""
    )
    plan = load_plan(plan_path)
    assert plan.switch is not None and plan.switch.directory is not None and plan.switch.dns is None

    switched = route_users(plan.switch.directory, ["ann@switch.test"], "target")
    back = route_users(plan.switch.directory, ["ann@switch.test"], "legacy")

    assert switched.confirmed and switched.users[0].after == (TARGET_HOST,)
    assert back.confirmed and back.users[0].after == (LEGACY_HOST,)

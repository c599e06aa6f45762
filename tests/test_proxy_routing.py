"""The proxy's plan section, login rewriting, the router's order and the limits' arithmetic: pure
code and a real state store, no servers (the protocols are tested against real Dovecots elsewhere)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.plan.proxy_model import LimitsOption
from runners.proxy.contracts import DecidedBy, Service, TlsMode
from runners.proxy.limits import LoginLimits
from runners.proxy.login_rewrite import rewrite, rewrite_login
from runners.proxy.router import PlanRouter
from runners.proxy.settings import backends, listeners
from runners.state.errors import StoreError
from runners.state.statuses import StepStatus
from runners.state.store import StateStore
from runners.state.wave_step_rows import Actor

BASE = """
[source]
type = "imap"
host = "127.0.0.1"
port = 1143
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:SRC_PW"

[target]
type = "imap"
host = "127.0.0.1"
port = 2143
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:DST_PW"

[mailboxes]
csv = "mailboxes.csv"
"""
CSV = "source,target,wave\nalice,alice@tenant.example,pilot\nbob,bob@tenant.example,later\n"


def write(tmp_path: Path, proxy: str) -> Path:
    (tmp_path / "mailboxes.csv").write_text(CSV)
    path = tmp_path / "plan.toml"
    path.write_text(BASE + textwrap.dedent(proxy))
    return path


def plan_error(path: Path) -> PlanError:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    return info.value


# -- login rewriting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "substitutions", "suffix", "expected"),
    [
        ("jsmith", (), "tenant.example", "jsmith@tenant.example"),
        ("jsmith", (), "@tenant.example", "jsmith@tenant.example"),
        ("jsmith@old.example", (), "tenant.example", "jsmith@old.example"),  # has a domain: no suffix
        ("jsmith%old.example", (("%", "@"),), "tenant.example", "jsmith@old.example"),  # substitution first
        ("john.smith", ((".", "_"),), "", "john_smith"),
        ("a.b%c", ((".", "_"), ("%", "@")), "t.example", "a_b@c"),  # in the order written
        ("jsmith", (), "", "jsmith"),
        ("", (), "tenant.example", "@tenant.example"),
    ],
)
def test_rewrite_applies_substitutions_in_order_then_the_suffix(
    login: str, substitutions: tuple[tuple[str, str], ...], suffix: str, expected: str
) -> None:
    assert rewrite(login, substitutions, suffix) == expected


def test_rewrite_is_per_backend(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, """
        [proxy]
        imap_port = 1430
        [proxy.backends.target]
        login_suffix = "tenant.example"
        substitutions = { "%" = "@", "." = "_" }
    """))  # fmt: skip
    assert plan.proxy is not None
    all_backends = backends(plan.proxy)
    assert rewrite_login("j.smith", all_backends["legacy"]) == "j.smith"
    assert rewrite_login("j.smith", all_backends["target"]) == "j_smith@tenant.example"


# -- the [proxy] section -------------------------------------------------------------------------


def test_backends_start_from_source_and_target_and_listeners_from_ports(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, """
        [proxy]
        listen = ["127.0.0.1", "::1"]
        imap_port = 1430
        pop3_port = 1100
        submission_port = 5870
        grace_seconds = 30
        [proxy.backends.legacy]
        pop3 = "127.0.0.1:1110"
        pop3_tls = "none"
        [proxy.backends.archive]
        imap = "archive.example:993"
        [proxy.smtp]
        max_recipients = 50  # the SMTP side's settings (runners/plan/proxy_smtp_options.py)
        [proxy.capture]
        enabled = false  # the credential capture reads it (runners/plan/proxy_capture_options.py)
    """))  # fmt: skip
    options = plan.proxy
    assert options is not None and options.grace_seconds == 30.0
    assert options.smtp.max_recipients == 50
    got = backends(options)
    assert got["legacy"].endpoints == {
        Service.IMAP: got["legacy"].endpoints[Service.IMAP],
        Service.POP3: got["legacy"].endpoints[Service.POP3],
    }
    assert (got["legacy"].endpoints[Service.IMAP].port, got["legacy"].endpoints[Service.IMAP].tls) == (
        1143,
        TlsMode.NONE,
    )
    assert got["target"].endpoints[Service.IMAP].port == 2143
    archive = got["archive"].endpoints[Service.IMAP]
    assert (archive.host, archive.port, archive.tls, archive.tls_verify) == (
        "archive.example",
        993,
        TlsMode.IMPLICIT,
        True,
    )
    assert [(x.service, x.host, x.port) for x in listeners(options)] == [
        (Service.IMAP, "127.0.0.1", 1430), (Service.IMAP, "::1", 1430),
        (Service.POP3, "127.0.0.1", 1100), (Service.POP3, "::1", 1100),
        (Service.SUBMISSION, "127.0.0.1", 5870), (Service.SUBMISSION, "::1", 5870),
    ]  # fmt: skip
    assert plan.proxy is not None and plan.proxy.routing.default == "legacy"


@pytest.mark.parametrize(
    ("proxy", "needle", "key", "words"),
    [
        ("[proxy]\nimap_prot = 1430\n", "imap_prot", "proxy.imap_prot", 'did you mean "imap_port"'),
        ('[proxy]\nlisten = "localhost"\nimap_port = 1\n', "listen", "proxy.listen", "is not an IP address"),
        ("[proxy]\ngrace_seconds = 5\n", "[proxy]", "proxy", "names no port"),
        ("[proxy]\nimaps_port = 993\n", "imaps_port", "proxy.imaps_port", "needs a certificate"),
        (
            '[proxy]\nimap_port = 1430\n[proxy.backends.target]\nimap = "mail.example.org:143"\nimap_tls = "none"\n',
            "imap_tls",
            "proxy.backends.target.imap_tls",
            "passwords in clear",
        ),
        (
            '[proxy]\nimap_port = 1430\n[proxy.backends.target]\nimap = "mail.example.org"\n',
            "imap = ",
            "proxy.backends.target.imap",
            "is not host:port",
        ),
        (
            '[proxy]\nimap_port = 1430\n[proxy.routing]\ndefault = "nowhere"\n',
            "default",
            "proxy.routing.default",
            '"nowhere" is not a backend',
        ),
        (
            '[proxy]\nimap_port = 1430\n[proxy.routing]\nstatic = { carol = "elsewhere" }\n',
            "static",
            "proxy.routing.static",
            '"elsewhere" is not a backend',
        ),
        (
            "[proxy]\nimap_port = 1430\n[proxy.routing]\ndirectory = true\n",
            "directory",
            "proxy.routing.directory",
            "[switch.directory]",
        ),
        (
            "[proxy]\nimap_port = 1430\n[proxy.limits]\nmax_line_bytes = 10\n",
            "max_line_bytes",
            "proxy.limits.max_line_bytes",
            "between 512",
        ),
        (
            "[proxy]\nimap_port = 1430\n[proxy.limits]\nlockout_failure = 3\n",
            "lockout_failure",
            "proxy.limits.lockout_failure",
            'did you mean "lockout_failures"',
        ),
    ],
)
def test_proxy_errors_name_file_line_and_key(
    tmp_path: Path, proxy: str, needle: str, key: str, words: str
) -> None:
    path = write(tmp_path, proxy)
    error = plan_error(path)
    lines = path.read_text().splitlines()
    expected_line = next(
        n for n, line in enumerate(lines, start=1) if needle in line and n > BASE.count("\n")
    )
    assert (error.key, error.line) == (key, expected_line), str(error)
    assert words in error.message
    assert error.path == str(path)


# -- the router ----------------------------------------------------------------------------------


def route(router: PlanRouter, login: str) -> tuple[str, DecidedBy, str]:
    r = asyncio.run(router.route_user(login))
    return r.backend, r.decided_by, r.backend_login


def test_router_order_store_then_static_then_default_and_a_switch_is_seen_at_once(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, """
        [proxy]
        imap_port = 1430
        cache_seconds = 3600
        [proxy.backends.target]
        login_suffix = "tenant.example"
        [proxy.routing]
        static = { bob = "target", "dave" = "target" }
    """))  # fmt: skip
    assert plan.proxy is not None
    store = StateStore(plan.state_db)
    router = PlanRouter(plan, backends(plan.proxy), store)
    # Nothing switched: the store doesn't decide; a static override, else the default.
    assert route(router, "alice") == ("legacy", DecidedBy.DEFAULT, "alice")
    assert route(router, "BOB") == ("target", DecidedBy.STATIC, "BOB@tenant.example")
    assert route(router, "zed") == ("legacy", DecidedBy.DEFAULT, "zed")
    assert (
        asyncio.run(router.route_user("alice")).reason
        == "wave pilot not switched; the plan's default backend"
    )
    assert router.refresh() == frozenset()

    step = store.begin_step("pilot", "switched", Actor("t", "h"), {})
    assert router.refresh() == frozenset()  # started is not done
    store.end_step(step, StepStatus.DONE)
    assert router.refresh() == {"pilot"}
    decided = asyncio.run(router.route_user("alice"))
    assert (decided.backend, decided.decided_by, decided.backend_login) == (
        "target",
        DecidedBy.STORE,
        "alice@tenant.example",
    )
    assert decided.reason == "wave pilot switched"
    # The target address is another spelling of the same plan user.
    assert route(router, "alice@tenant.example")[:2] == ("target", DecidedBy.STORE)
    assert router.store_backend("alice") == "target" and router.store_backend("zed") is None

    rollback = store.begin_step("pilot", "rolled-back", Actor("t", "h"), {})
    store.end_step(rollback, StepStatus.DONE)
    assert router.refresh() == {"pilot"}
    assert route(router, "alice") == ("legacy", DecidedBy.STORE, "alice")
    assert router.rewritten_logins("alice") == {"legacy": "alice", "target": "alice@tenant.example"}
    store.close()


def test_a_switch_whose_first_read_failed_is_read_again_at_the_next_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = load_plan(write(tmp_path, """
        [proxy]
        imap_port = 1430
    """))  # fmt: skip
    assert plan.proxy is not None
    store = StateStore(plan.state_db)
    router = PlanRouter(plan, backends(plan.proxy), store)
    assert route(router, "alice")[:2] == ("legacy", DecidedBy.DEFAULT)  # kept until the store moves
    store.end_step(store.begin_step("pilot", "switched", Actor("t", "h"), {}), StepStatus.DONE)

    def locked(wave: str) -> list[str]:
        raise StoreError(plan.state_db, "database is locked")

    with monkeypatch.context() as patched:  # the store can't be read at the moment the switch is seen
        patched.setattr(store, "steps_done", locked)
        with pytest.raises(StoreError):
            router.refresh()
    assert router.refresh() == {"pilot"}
    assert route(router, "alice")[:2] == ("target", DecidedBy.STORE)
    store.close()


# -- limits --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_are_delayed_more_and_more_then_locked_out_for_a_while() -> None:
    clock = Clock()
    limits = LoginLimits(LimitsOption(auth_failure_delay_seconds=2, auth_failure_max_delay_seconds=15,
                                      lockout_failures=5, lockout_seconds=60), clock)  # fmt: skip
    delays = [limits.failed("10.0.0.1", "alice") for _ in range(4)]
    assert delays == [2, 4, 8, 15]
    assert not limits.locked("10.0.0.1", "alice")
    limits.failed("10.0.0.1", "alice")
    assert limits.locked("10.0.0.1", "someone-else")  # the address is locked
    assert limits.locked("10.0.0.2", "ALICE")  # and the user, from anywhere
    assert not limits.locked("10.0.0.2", "bob")
    clock.now += 61
    assert not limits.locked("10.0.0.1", "alice")
    assert limits.failed("10.0.0.1", "alice") == 2  # counting starts again after a lock-out
    limits.succeeded("10.0.0.1", "alice")
    assert limits.failed("10.0.0.1", "alice") == 2


def test_unauthenticated_connections_are_counted_per_address() -> None:
    limits = LoginLimits(LimitsOption(max_unauthenticated_per_address=2))
    assert limits.admit("a") and limits.admit("a") and not limits.admit("a") and limits.admit("b")
    limits.release("a")
    assert limits.admit("a") and limits.unauthenticated("a") == 2


def test_the_proxy_example_in_the_docs_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "plan.md").read_text(encoding="utf-8")
    switch = doc.split("## `[switch]`", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    proxy = doc.split("## [proxy]", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "tls").mkdir()
    for name in ("tls/imap.pem", "tls/imap.key"):
        (tmp_path / name).write_text("not read at load time")
    plan = load_plan(write(tmp_path, switch + proxy))
    options = plan.proxy
    assert options is not None and options.grace_seconds == 300 and options.cache_seconds == 30
    assert options.certificates[0].names == ("imap.example.org", "mail.example.org")
    assert options.routing.static == {"jsmith": "target"} and options.routing.match == "uid"
    assert options.routing.values["archive.example"] == "target"
    got = backends(options)
    assert rewrite_login("j.smith", got["target"]) == "j_smith@tenant.example"
    assert got["legacy"].endpoints[Service.POP3].tls == TlsMode.IMPLICIT
    assert len(listeners(options)) == 14  # 7 ports on 2 addresses


def test_cutover_proxy_route_says_what_the_store_decided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cockpit.cli import main

    path = write(tmp_path, """
        [proxy]
        imap_port = 1430
        [proxy.backends.target]
        login_suffix = "tenant.example"
    """)  # fmt: skip
    plan = load_plan(path)
    store = StateStore(plan.state_db)
    store.end_step(store.begin_step("pilot", "switched", Actor("t", "h"), {}), StepStatus.DONE)
    store.close()
    assert main(["proxy", "route", "ALICE", "--plan", str(path), "--output", "json"]) == 0
    decided = json.loads(capsys.readouterr().out)
    assert decided == {
        "user": "alice", "backend": "target", "backend_login": "ALICE@tenant.example", "decided_by": "store",
        "reason": "wave pilot switched", "logins": {"legacy": "ALICE", "target": "ALICE@tenant.example"},
    }  # fmt: skip
    assert main(["proxy", "forget", "alice", "--plan", str(path)]) == 0  # the credential capture's (P3)
    assert "no captured password was kept for alice" in capsys.readouterr().out
    assert main(["proxy", "run", "alice", "--plan", str(path)]) == 2
    assert "takes no USER" in capsys.readouterr().err


_SPOOL = '[proxy]\nsmtp_port = 10025\n[proxy.smtp]\nstore_and_forward = true\nspool_dir = "spool"\n'


def test_bounce_via_names_a_backend_with_an_smtp_endpoint(tmp_path: Path) -> None:
    relay = '[proxy.backends.relay]\nsmtp = "127.0.0.1:2525"\nsmtp_tls = "none"\n'
    plan = load_plan(write(tmp_path, _SPOOL + 'bounce_via = "relay"\n' + relay))
    assert plan.proxy is not None and plan.proxy.smtp.bounce_via == "relay"
    path = write(tmp_path, _SPOOL + 'bounce_via = "nobody"\n')
    unknown = plan_error(path)
    line = path.read_text().splitlines().index('bounce_via = "nobody"') + 1
    assert (unknown.key, unknown.line) == ("proxy.smtp.bounce_via", line)
    assert '"nobody" is not a backend' in unknown.message
    # legacy speaks IMAP here ([source]): it has no smtp endpoint to send notices through
    no_smtp = plan_error(write(tmp_path, _SPOOL + 'bounce_via = "legacy"\n'))
    assert no_smtp.key == "proxy.smtp.bounce_via" and 'no "smtp" endpoint' in no_smtp.message

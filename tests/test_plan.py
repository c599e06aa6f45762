"""Plan loading: the typed result, precise errors (file, line, key) and secret hygiene."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from planned_targets import planned

from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.plan.locate import KeyLocator
from runners.plan.model import Endpoint, FolderRules, MailboxEntry, Plan, Secret

REPO = Path(__file__).resolve().parent.parent

# The plan our acceptance scripts write; it must keep loading exactly like this.
ACCEPTANCE_PLAN = """\
[source]
type = "imap"                 # imap | pop3 | maildir   (ews | graph are accepted only for [target])
host = "127.0.0.1"
port = 10143
security = "plain"            # plain | starttls | tls  (plain only allowed to a loopback host, else an error)
auth = "master"               # master | password
master_user = "admin"
master_password = "env:SRC_MASTER_PW"   # secret references: env:NAME, file:PATH, or a literal

[target]
type = "imap"
host = "127.0.0.1"
port = 20143
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:DST_MASTER_PW"
max_message_bytes = 36700160  # optional target limit

[mailboxes]
csv = "mailboxes.csv"         # columns: source,target,wave (optional: source_password,target_password)
"""

CSV = "source,target,wave\na@old.test,a@new.test,pilot\nb@old.test,b@new.test,wave1\n"

# A minimal valid plan, for tests that change one thing.
BASE = """\
[source]
type = "imap"
host = "imap.old.test"
auth = "master"
master_user = "admin"
master_password = "env:SRC_PW"

[target]
type = "imap"
host = "imap.new.test"
auth = "master"
master_user = "admin"
master_password = "env:DST_PW"

[mailboxes]
csv = "mailboxes.csv"
"""


SOURCE_MASTER_AUTH = 'auth = "master"\nmaster_user = "admin"\nmaster_password = "env:SRC_PW"'


def write(tmp_path: Path, plan: str, csv: str | None = CSV, name: str = "plan.toml") -> Path:
    plan_path = tmp_path / name
    plan_path.write_text(textwrap.dedent(plan), encoding="utf-8")
    if csv is not None:
        (tmp_path / "mailboxes.csv").write_text(csv, encoding="utf-8")
    return plan_path


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def plan_error(plan_path: Path) -> PlanError:
    with pytest.raises(PlanError) as info:
        load_plan(plan_path)
    return info.value


# -- the happy path ------------------------------------------------------------------------------


def test_acceptance_plan_loads_into_the_expected_dataclasses(tmp_path: Path) -> None:
    path = write(tmp_path, ACCEPTANCE_PLAN)

    plan = load_plan(path)

    assert plan == Plan(
        path=tmp_path / "plan.toml",
        source=Endpoint(
            type="imap",
            host="127.0.0.1",
            port=10143,
            security="plain",
            auth="master",
            master_user="admin",
            master_password=Secret("env:SRC_MASTER_PW"),
        ),
        target=Endpoint(
            type="imap",
            host="127.0.0.1",
            port=20143,
            security="plain",
            auth="master",
            master_user="admin",
            master_password=Secret("env:DST_MASTER_PW"),
            max_message_bytes=36700160,
        ),
        mailboxes=(
            MailboxEntry("a@old.test", "a@new.test", "pilot", origin=f"{tmp_path}/mailboxes.csv:2"),
            MailboxEntry("b@old.test", "b@new.test", "wave1", origin=f"{tmp_path}/mailboxes.csv:3"),
        ),
        folders=FolderRules(),
        state_dir=tmp_path / ".cutover",
        workers=4,
        batch_messages=200,
        batch_bytes=1024 * 1024,
    )
    assert plan.waves == ("pilot", "wave1")


def test_example_plan_in_assets_loads() -> None:
    plan = load_plan(REPO / "assets" / "examples" / "plan.toml")

    assert plan.source.type == "imap"
    assert plan.target.max_message_bytes == 36700160
    assert plan.mailboxes
    assert plan.state_dir == REPO / "assets" / "examples" / ".cutover"
    assert plan.waves == ("pilot", "wave1") and plan.is_pilot("pilot") and not plan.is_pilot("wave1")


def test_complete_example_in_the_docs_loads(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "plan.md").read_text(encoding="utf-8")
    toml = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    csv = doc.split("```csv\n", 1)[1].split("```", 1)[0]

    plan = load_plan(write(tmp_path, toml, csv=csv))

    assert plan.source.login_template == "{user}*{master}"
    assert plan.target.password == Secret(f"file:{tmp_path}/secrets/{{user}}.pw")
    assert [m.wave for m in plan.mailboxes] == ["pilot", "pilot", "wave1", "vip"]
    assert plan.mailboxes[1].target_password == Secret("env:BOB_NEW_PW")
    assert plan.folders.special["sent"] == "Sent Items"
    assert plan.state_dir == tmp_path / "state"


def test_readiness_example_in_the_docs_loads(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "plan.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in doc.split("```toml\n")[1:]]
    main, readiness = blocks[0], next(b for b in blocks if b.startswith("[dns]"))
    csv = doc.split("```csv\n", 1)[1].split("```", 1)[0]

    r = load_plan(write(tmp_path, main + readiness, csv=csv)).readiness

    assert r.dns is not None and r.dns.resolver == "127.0.0.1:5353"
    assert r.source_directory is not None and r.source_directory.preset == "iplanet"
    assert r.capacity.addresses == {"mail.example.com": "192.0.2.10", "hub1.example.com": "192.0.2.25"}
    assert (r.capacity.cert_warn_days, r.capacity.cert_block_days) == (30, 7)
    assert r.canary == "alice@example.com"
    assert r.waivers[0].check == "DNS-TTL-004"


def test_every_optional_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [source]
        type = "imap"
        host = "imap.old.test"
        port = 1993
        security = "tls"
        auth = "master"
        master_user = "admin"
        master_password = "file:secrets/master"
        login_template = "{user}*{master}"
        tls_verify = false
        ca_file = "certs/ca.pem"
        timeout = 30
        max_connections = 3

        [target]
        type = "imap"
        host = "ex.new.test"
        security = "starttls"
        auth = "master"
        master_user = "svc"
        master_password = "env:DST_PW"
        login_template = "CORP\\\\{master}\\\\{user}"
        max_message_bytes = 1000

        [folders]
        rename = { "Old/Path" = "New/Path", "Archiv" = "Archive" }
        exclude = ["Trash/*", "Spam"]
        special = { sent = "Sent Items" }

        [state]
        dir = "/var/lib/cutover"

        [run]
        workers = 8
        batch_messages = 50
        batch_bytes = 1048576

        [mailboxes]
        entries = [
          { source = "x@old.test", target = "x@new.test", wave = "pilot" },
        ]
        """,
        csv=None,
    )

    plan = load_plan(path)

    assert plan.source.port == 1993
    assert plan.source.login_template == "{user}*{master}"
    assert plan.source.tls_verify is False  # recorded so the CLI can warn
    assert plan.source.ca_file == str(tmp_path / "certs" / "ca.pem")
    assert plan.source.master_password == Secret(f"file:{tmp_path}/secrets/master")
    assert plan.source.timeout == 30.0
    assert plan.source.max_connections == 3
    assert plan.target.port == 143
    assert plan.target.login_template == "CORP\\{master}\\{user}"
    assert plan.target.tls_verify is True
    assert plan.folders == FolderRules(
        rename={"Old/Path": "New/Path", "Archiv": "Archive"},
        exclude=("Trash/*", "Spam"),
        special={"sent": "Sent Items"},
    )
    assert plan.state_dir == Path("/var/lib/cutover")
    assert (plan.workers, plan.batch_messages, plan.batch_bytes) == (8, 50, 1048576)
    entry_line = line_of(path.read_text(encoding="utf-8"), "x@old.test")
    assert plan.mailboxes == (
        MailboxEntry("x@old.test", "x@new.test", "pilot", origin=f"{path}:{entry_line}"),
    )


@pytest.mark.parametrize(
    ("kind", "security", "port"),
    [
        ("imap", "plain", 143),
        ("imap", "starttls", 143),
        ("imap", "tls", 993),
        ("pop3", "starttls", 110),
        ("pop3", "tls", 995),
    ],
)
def test_default_ports_follow_type_and_security(tmp_path: Path, kind: str, security: str, port: int) -> None:
    text = BASE.replace('type = "imap"\nhost = "imap.old.test"', f'type = "{kind}"\nhost = "localhost"', 1)
    text = text.replace('host = "localhost"', f'host = "localhost"\nsecurity = "{security}"', 1)
    plan = load_plan(write(tmp_path, text))
    assert plan.source.port == port


def test_maildir_source(tmp_path: Path) -> None:
    text = BASE.replace(
        'type = "imap"\nhost = "imap.old.test"\nauth = "master"\nmaster_user = "admin"\n'
        'master_password = "env:SRC_PW"',
        'type = "maildir"\npath = "mail/{user}/Maildir"\nmaildir_layout = "courier"',
    )
    plan = load_plan(write(tmp_path, text))
    assert plan.source.type == "maildir"
    assert plan.source.path == f"{tmp_path}/mail/{{user}}/Maildir"
    assert plan.source.maildir_layout == "courier"


def test_graph_target_defaults_its_host_and_port(tmp_path: Path) -> None:
    app = 'tenant_id = "t"\nclient_id = "c"\nclient_secret = "env:S"'
    text = BASE.replace('type = "imap"\nhost = "imap.new.test"', 'type = "graph"\n' + app)
    plan = load_plan(write(tmp_path, text))
    assert (plan.target.host, plan.target.port) == ("graph.microsoft.com", 443)


@pytest.mark.parametrize(
    ("kind", "table"),
    [
        ("maildir", 'path = "/srv/{user}/Maildir"'),
    ],
)
def test_a_target_type_not_built_yet_is_refused_at_load_time(tmp_path: Path, kind: str, table: str) -> None:
    start, end = BASE.index("[target]"), BASE.index("[mailboxes]")
    text = BASE[:start] + f'[target]\n# not built yet\ntype = "{kind}"\n{table}\n\n' + BASE[end:]
    error = plan_error(write(tmp_path, text))
    line = text[: text.index(f'type = "{kind}"')].count("\n") + 1
    assert (error.line, error.key) == (line, "target.type")
    assert f'type "{kind}" can\'t be the [target] yet' in error.message and "built: imap" in error.message
    assert str(error).startswith(f"{error.path}:{line}: [target.type]")


def test_registering_an_adapter_lifts_the_refusal(tmp_path: Path) -> None:
    start, end = BASE.index("[target]"), BASE.index("[mailboxes]")
    text = BASE[:start] + '[target]\ntype = "maildir"\npath = "/srv/{user}/Maildir"\n\n' + BASE[end:]
    with planned("maildir"):
        assert load_plan(write(tmp_path, text)).target.type == "maildir"
    assert plan_error(write(tmp_path, text)).key == "target.type"  # and taking it away restores it


def test_inline_entries_and_csv_combine(tmp_path: Path) -> None:
    text = BASE + 'entries = [ { source = "c@old.test", target = "c@new.test", wave = "late" } ]\n'
    path = write(tmp_path, text)
    plan = load_plan(path)
    assert [m.source for m in plan.mailboxes] == ["a@old.test", "b@old.test", "c@old.test"]
    assert plan.mailboxes[2].origin == f"{path}:{line_of(text, 'entries =')}"


def test_csv_tolerates_bom_blank_lines_and_header_case(tmp_path: Path) -> None:
    csv = "\ufeffSource , TARGET,Wave\r\n\r\na@old.test,a@new.test,pilot\r\n\r\n"
    plan = load_plan(write(tmp_path, BASE, csv=csv))
    assert plan.mailboxes == (
        MailboxEntry("a@old.test", "a@new.test", "pilot", origin=f"{tmp_path}/mailboxes.csv:3"),
    )


def test_relative_paths_resolve_against_the_plan_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_dir = tmp_path / "plans" / "acme"
    plan_dir.mkdir(parents=True)
    (plan_dir / "lists").mkdir()
    (plan_dir / "lists" / "boxes.csv").write_text(
        "source,target,wave,source_password\na@old.test,a@new.test,pilot,file:pw/{user}\n", encoding="utf-8"
    )
    text = (
        BASE.replace('csv = "mailboxes.csv"', 'csv = "lists/boxes.csv"')
        .replace(SOURCE_MASTER_AUTH, 'auth = "password"')
        .replace('host = "imap.new.test"', 'host = "imap.new.test"\nca_file = "../ca.pem"')
        + '\n[state]\ndir = "state"\n'
    )
    write(plan_dir, text, csv=None)
    monkeypatch.chdir(tmp_path)  # somewhere else: relative paths must not follow the cwd

    plan = load_plan("plans/acme/plan.toml")

    assert plan.path == plan_dir / "plan.toml"
    assert plan.state_dir == plan_dir / "state"
    assert plan.state_db == plan_dir / "state" / "state.db"
    assert plan.target.ca_file == str(tmp_path / "plans" / "ca.pem")
    assert plan.mailboxes[0].source_password == Secret(f"file:{plan_dir}/pw/{{user}}")
    assert plan.mailboxes[0].origin == "plans/acme/lists/boxes.csv:2"


def test_secrets_are_not_read_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SRC_PW", raising=False)
    text = BASE.replace('"env:DST_PW"', '"file:/nonexistent/secret"')
    plan = load_plan(write(tmp_path, text))  # neither the variable nor the file exists
    assert plan.source.master_password == Secret("env:SRC_PW")


# -- secrets never leak ----------------------------------------------------------------------------


def test_repr_and_errors_never_show_secret_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_value = "env-value-Zq81"
    literal = "literal-pw-Xy42"
    row_secret = "row-pw-Kk17"
    monkeypatch.setenv("DST_PW", env_value)
    text = BASE.replace('"env:SRC_PW"', f'"{literal}"')
    csv = f"source,target,wave,target_password\na@old.test,a@new.test,pilot,{row_secret}\n"
    plan = load_plan(write(tmp_path, text, csv=csv))

    assert plan.target.master_password is not None
    assert plan.target.master_password.reveal() == env_value
    for shown in (repr(plan), str(plan)):
        assert env_value not in shown
        assert literal not in shown
        assert row_secret not in shown

    # Errors in rows and keys that carry secrets don't echo them either.
    bad_csvs = [
        csv + f"a@old.test,z@new.test,pilot,{row_secret}\n",  # duplicate
        csv + f"b@old.test,b@new.test,pilot,{row_secret},extra\n",  # cell count
        csv + f",b@new.test,pilot,{row_secret}\n",  # empty source
    ]
    for bad in bad_csvs:
        error = plan_error(write(tmp_path, text, csv=bad))
        assert row_secret not in str(error) and literal not in str(error), str(error)
    wrong_type = BASE.replace('"env:SRC_PW"', f'["{literal}"]')
    error = plan_error(write(tmp_path, wrong_type))
    assert error.key == "source.master_password"
    assert literal not in str(error) and env_value not in str(error)


# -- errors: file, line and key ---------------------------------------------------------------------


def test_missing_key_points_at_the_table_header(tmp_path: Path) -> None:
    text = BASE.replace('host = "imap.new.test"\n', "")
    path = write(tmp_path, text)

    error = plan_error(path)

    assert (error.path, error.line, error.key) == (str(path), line_of(text, "[target]"), "target.host")
    assert '[target] is missing "host"' in error.message
    assert str(error).startswith(f"{path}:{error.line}: [target.host]")


def test_missing_table(tmp_path: Path) -> None:
    text = BASE.split("[target]")[0] + "[mailboxes]\ncsv = 'mailboxes.csv'\n"
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (None, "target")
    assert "missing table [target]" in error.message


def test_wrong_type_names_the_expected_type(tmp_path: Path) -> None:
    text = BASE.replace('host = "imap.new.test"', 'host = "imap.new.test"\nport = "993"')
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, 'port = "993"'), "target.port")
    assert error.message == "expected an integer, got a string"


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    text = BASE + "\n[run]\nworkers = true\n"
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "workers"), "run.workers")
    assert error.message == "expected an integer, got a boolean"


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    text = BASE.replace('master_password = "env:DST_PW"', 'master_pasword = "env:DST_PW"')
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "master_pasword"), "target.master_pasword")
    assert error.message == 'unknown key "master_pasword" in [target] (did you mean "master_password"?)'


def test_key_in_the_wrong_table_says_where_it_belongs(tmp_path: Path) -> None:
    text = BASE.replace('host = "imap.old.test"', 'workers = 8\nhost = "imap.old.test"')
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (3, "source.workers")
    assert "workers belongs in [run]" in error.message


def test_unknown_table(tmp_path: Path) -> None:
    text = BASE + "\n[folder]\nexclude = []\n"
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "[folder]"), "folder")
    assert 'did you mean "folders"' in error.message


def test_bad_enum_lists_the_choices(tmp_path: Path) -> None:
    text = BASE.replace('host = "imap.new.test"', 'host = "imap.new.test"\nsecurity = "tsl"')
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "tsl"), "target.security")
    assert error.message == '"tsl" is not one of plain | starttls | tls (did you mean "tls"?)'


def test_ews_can_only_be_the_target(tmp_path: Path) -> None:
    text = BASE.replace('type = "imap"', 'type = "ews"', 1)
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (2, "source.type")
    assert "can only be a [target]" in error.message


def test_pop3_can_not_be_the_target(tmp_path: Path) -> None:
    text = BASE.replace('type = "imap"\nhost = "imap.new.test"', 'type = "pop3"\nhost = "imap.new.test"')
    error = plan_error(write(tmp_path, text))
    assert error.key == "target.type"
    assert "POP3 can't store messages" in error.message


def test_plain_to_a_remote_host_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"imap.old.test": ["192.0.2.7"]}))  # no DNS query
    text = BASE.replace('host = "imap.old.test"', 'host = "imap.old.test"\nsecurity = "plain"')
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "plain"), "source.security")
    assert error.message == "plain text would send passwords in clear; use starttls or tls"


def _resolver(names: dict[str, list[str]]) -> Callable[..., list[tuple[Any, ...]]]:
    """A stand-in for the system resolver (the test asks no DNS server): ``names`` and nothing else."""

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0)) for address in names[host]]

    return getaddrinfo


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("localhost.", ["203.0.113.9"]),  # spelled like loopback, answered by DNS: not loopback
        ("mail.internal.test", ["127.0.0.1", "192.0.2.1"]),  # one address elsewhere is enough to refuse
        ("nowhere.test", []),  # doesn't resolve
    ],
)
def test_plain_is_judged_by_the_address_a_name_resolves_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, addresses: list[str]
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({host: addresses} if addresses else {}))
    text = BASE.replace('host = "imap.old.test"', f'host = "{host}"\nsecurity = "plain"')
    assert plan_error(write(tmp_path, text)).key == "source.security"


def test_a_name_that_resolves_to_loopback_only_may_be_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"imap.lab.test": ["127.0.0.1", "127.0.0.2"]}))
    text = BASE.replace('host = "imap.old.test"', 'host = "imap.lab.test"\nsecurity = "plain"')
    assert load_plan(write(tmp_path, text)).source.security == "plain"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_plain_to_loopback_is_allowed(tmp_path: Path, host: str) -> None:
    text = BASE.replace('host = "imap.old.test"', f'host = "{host}"\nsecurity = "plain"')
    plan = load_plan(write(tmp_path, text))
    assert plan.source.security == "plain"
    assert plan.source.host == host.strip("[]")


def test_toml_syntax_error_keeps_the_line(tmp_path: Path) -> None:
    text = BASE.replace('master_user = "admin"', 'master_user = "admin', 1)
    path = write(tmp_path, text)
    error = plan_error(path)
    assert (error.path, error.line, error.key) == (str(path), line_of(text, 'master_user = "admin'), None)
    assert error.message.startswith("TOML syntax error: ")
    assert "(at line" not in error.message


def test_toml_error_at_end_of_document(tmp_path: Path) -> None:
    text = BASE + "workers ="
    error = plan_error(write(tmp_path, text))
    assert error.line == len(text.splitlines())


def test_missing_plan_file(tmp_path: Path) -> None:
    error = plan_error(tmp_path / "nope.toml")
    assert (error.path, error.line) == (str(tmp_path / "nope.toml"), None)
    assert "not found" in error.message


def test_login_template_needs_both_fields(tmp_path: Path) -> None:
    text = BASE.replace('master_user = "admin"', 'master_user = "admin"\nlogin_template = "{user}*"', 1)
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "login_template"), "source.login_template")
    assert "{user} and {master}" in error.message


def test_master_auth_needs_master_password(tmp_path: Path) -> None:
    text = BASE.replace('master_password = "env:DST_PW"\n', "")
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "[target]"), "target.master_password")


def test_maildir_needs_a_path_and_no_host(tmp_path: Path) -> None:
    text = BASE.replace('type = "imap"', 'type = "maildir"', 1)
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (3, "source.host")
    assert 'does not apply to type = "maildir"' in error.message

    text = '[source]\ntype = "maildir"\n' + BASE[BASE.index("[target]") :]
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (1, "source.path")


def test_folder_rules_errors_point_at_their_key(tmp_path: Path) -> None:
    text = BASE + '\n[folders]\nrename = { "Old" = 3 }\n'
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "rename"), "folders.rename.Old")
    assert error.message == "expected a string, got an integer"

    text = BASE + '\n[folders]\nexclude = [\n  "Trash/*",\n  4,\n]\n'
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "exclude"), "folders.exclude")

    text = BASE + '\n[folders]\nspecial = { snet = "Sent Items" }\n'
    error = plan_error(write(tmp_path, text))
    assert error.key == "folders.special.snet"
    assert 'did you mean "sent"' in error.message


def test_run_limits(tmp_path: Path) -> None:
    for value in (0, 65):
        text = BASE + f"\n[run]\nbatch_messages = 10\nworkers = {value}\n"
        error = plan_error(write(tmp_path, text))
        assert (error.line, error.key) == (line_of(text, "workers"), "run.workers")
        assert error.message == f"must be between 1 and 64, got {value}"


# -- errors in the mailbox list -------------------------------------------------------------------


def test_missing_csv_names_the_plan_key(tmp_path: Path) -> None:
    text = BASE.replace("mailboxes.csv", "boxes.csv")
    path = write(tmp_path, text)
    error = plan_error(path)
    assert (error.path, error.line, error.key) == (str(path), line_of(text, "csv ="), "mailboxes.csv")
    assert error.message == f"mailbox list {tmp_path}/boxes.csv not found"


def test_csv_unknown_column(tmp_path: Path) -> None:
    csv = "source,target,wave,sorce_password\na@old.test,a@new.test,pilot,x\n"
    error = plan_error(write(tmp_path, BASE, csv=csv))
    assert (error.path, error.line, error.key) == (str(tmp_path / "mailboxes.csv"), 1, "sorce_password")
    assert 'did you mean "source_password"' in error.message


def test_csv_needs_a_wave_column(tmp_path: Path) -> None:
    error = plan_error(write(tmp_path, BASE, csv="source,target\na@old.test,a@new.test\n"))
    assert (error.line, error.key) == (1, "wave")


def test_csv_without_header(tmp_path: Path) -> None:
    error = plan_error(write(tmp_path, BASE, csv="a@old.test,a@new.test,pilot\n"))
    assert error.line == 1
    assert "header" in error.message


def test_csv_wave_may_have_spaces_but_addresses_may_not(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, BASE, csv="source,target,wave\na@old.test,a@new.test,Wave 1\n"))
    assert plan.waves == ("Wave 1",)
    error = plan_error(write(tmp_path, BASE, csv="source,target,wave\na@old.test,a @new.test,pilot\n"))
    assert (error.line, error.key) == (2, "target")
    assert error.message == 'target "a @new.test" contains spaces'


def test_csv_empty_source_names_the_line(tmp_path: Path) -> None:
    csv = "source,target,wave\n\na@old.test,a@new.test,pilot\n  ,b@new.test,pilot\n"
    error = plan_error(write(tmp_path, BASE, csv=csv))
    assert (error.path, error.line, error.key) == (str(tmp_path / "mailboxes.csv"), 4, "source")
    assert error.message == "source is empty"


def test_csv_duplicate_names_both_lines(tmp_path: Path) -> None:
    # A quoted cell spanning two lines must not throw the line numbers off.
    csv = "source,target,wave,source_password\na@old.test,a@new.test,pilot,\n"
    csv += '"b@old.test",b@new.test,x,"multi\nline"\n'
    csv += "A@OLD.TEST,z@new.test,wave1,\n"
    error = plan_error(write(tmp_path, BASE, csv=csv))
    shown = f"{tmp_path}/mailboxes.csv"
    assert (error.path, error.line, error.key) == (shown, 5, "source")
    assert error.message == f'source "A@OLD.TEST" is listed twice: {shown}:2 and {shown}:5'


def test_duplicate_target_across_csv_and_entries(tmp_path: Path) -> None:
    text = BASE + 'entries = [\n  { source = "q@old.test", target = "b@new.test", wave = "x" },\n]\n'
    path = write(tmp_path, text)
    error = plan_error(path)
    entry_line = line_of(text, "q@old.test")
    assert (error.path, error.line, error.key) == (str(path), entry_line, "mailboxes.entries[0].target")
    assert error.message == (
        f'target "b@new.test" is listed twice: {tmp_path}/mailboxes.csv:3 and {path}:{entry_line}'
    )


def test_entry_missing_wave_points_at_its_line(tmp_path: Path) -> None:
    text = BASE + 'entries = [\n  { source = "q@old.test", target = "q@new.test" },\n]\n'
    error = plan_error(write(tmp_path, text))
    assert (error.line, error.key) == (line_of(text, "q@old.test"), "mailboxes.entries[0].wave")


def test_password_auth_needs_a_password_per_row(tmp_path: Path) -> None:
    text = BASE.replace(SOURCE_MASTER_AUTH, 'auth = "password"')
    csv = "source,target,wave,source_password\n"
    csv += "a@old.test,a@new.test,pilot,env:A_PW\nb@old.test,b@new.test,pilot,\n"
    error = plan_error(write(tmp_path, text, csv=csv))
    assert (error.path, error.line, error.key) == (str(tmp_path / "mailboxes.csv"), 3, "source_password")
    assert "every mailbox needs a source_password" in error.message

    # A default per-user password on the endpoint covers every row.
    with_default = text.replace('auth = "password"', 'auth = "password"\npassword = "file:pw/{user}"')
    plan = load_plan(write(tmp_path, with_default, csv=csv))
    assert plan.source.password == Secret(f"file:{tmp_path}/pw/{{user}}")
    assert plan.mailboxes[0].source_password == Secret("env:A_PW")
    assert plan.mailboxes[1].source_password is None


# -- the key locator ------------------------------------------------------------------------------


def test_locator_maps_keys_to_lines() -> None:
    text = textwrap.dedent(
        """\
        top = 1
        [a]
        b.c = 2   # dotted
        "quoted key" = '''multi
        line = 9
        '''
        d = { e = 1, f = { g = 2 } }
        arr = [
          { x = 1 },  # comment ]
          "s,]",
          { x = 2 },
        ]
        [[t]]
        n = 1
        [[t]]
        n = 2
        [t.sub]
        m = 3
        """
    )
    loc = KeyLocator(text)
    assert loc.line_of(("top",)) == 1
    assert loc.line_of(("a",)) == 2
    assert loc.line_of(("a", "b")) == 3
    assert loc.line_of(("a", "b", "c")) == 3
    assert loc.line_of(("a", "quoted key")) == 4
    assert loc.line_of(("a", "line")) == 2  # inside a string: not a key, falls back to [a]
    assert loc.line_of(("a", "d", "f", "g")) == 7
    assert loc.line_of(("a", "arr", 0, "x")) == 9
    assert loc.line_of(("a", "arr", 1)) == 10
    assert loc.line_of(("a", "arr", 2, "x")) == 11
    assert loc.line_of(("t", 0, "n")) == 14
    assert loc.line_of(("t", 1)) == 15
    assert loc.line_of(("t", 1, "sub", "m")) == 18
    assert loc.line_of(("a", "missing")) == 2
    assert loc.line_of(("nowhere",)) is None

"""`[target] type = "graph"`: its keys load into GraphOptions, and every mistake names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.errors import PlanError
from runners.plan.loader import load_plan
from runners.plan.model import Plan

PLAN = """\
[source]
type = "imap"
host = "imap.old.test"
auth = "master"
master_user = "admin"
master_password = "env:SRC_PW"

[target]
type = "graph"
tenant_id = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
{target}

[mailboxes]
entries = [ {{ source = "a", target = "a@contoso.test", wave = "pilot" }} ]
"""


def load(tmp_path: Path, target: str = 'client_secret = "env:GRAPH_SECRET"') -> Plan:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.format(target=target), encoding="utf-8")
    return load_plan(path)


def error(tmp_path: Path, target: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        load(tmp_path, target)
    return info.value


def line(target: str, needle: str) -> int:
    text = PLAN.format(target=target)
    return text[: text.index(needle)].count("\n") + 1


def test_defaults_are_microsofts(tmp_path: Path) -> None:
    plan = load(tmp_path)
    graph = plan.target.graph
    assert graph is not None
    assert (plan.target.host, plan.target.port) == ("graph.microsoft.com", 443)
    assert graph.graph_url == "https://graph.microsoft.com"
    assert graph.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert graph.route == "auto"
    assert (graph.pace_concurrency, graph.pace_requests, graph.pace_request_window) == (4, 10_000, 600.0)
    assert (graph.pace_upload_bytes, graph.pace_upload_window) == (150_000_000, 300.0)
    assert "env:GRAPH_SECRET" in repr(graph.client_secret)
    # The app signs in, not the user: no per-mailbox password is asked for.
    assert plan.mailboxes[0].target_password is None


def test_overrides_for_a_lab(tmp_path: Path) -> None:
    plan = load(
        tmp_path,
        'client_certificate = "file:app.pem"\nroute = "json"\ngraph_url = "https://127.0.0.1:8443"\n'
        'authority_url = "https://127.0.0.1:8443/"\npace_requests = 600\npace_request_window = 60',
    )
    graph = plan.target.graph
    assert graph is not None and graph.client_secret is None
    assert repr(graph.client_certificate) == f"Secret(file:{tmp_path / 'app.pem'})"
    assert (plan.target.host, plan.target.port) == ("127.0.0.1", 8443)
    assert graph.authority == "https://127.0.0.1:8443/contoso.onmicrosoft.com"
    assert (graph.route, graph.pace_requests, graph.pace_request_window) == ("json", 600, 60.0)


def test_host_and_port_move_graph(tmp_path: Path) -> None:
    plan = load(tmp_path, 'client_secret = "s3cret-value"\nhost = "127.0.0.1"\nport = 9443')
    assert plan.target.graph is not None and plan.target.graph.graph_url == "https://127.0.0.1:9443"


@pytest.mark.parametrize(
    ("target", "key", "words"),
    [
        ("", "target", "needs client_secret or client_certificate"),
        ('client_secret = "a"\nclient_certificate = "file:x"', "target.client_certificate", "not both"),
        (
            'client_secret = "a"\nroute = "mime"',
            "target.route",
            '"mime" is not one of auto | import-mime | json',
        ),
        ('client_secret = "a"\ngraph_url = "http://127.0.0.1:80"', "target.graph_url", "https:// URL"),
        (
            'client_secret = "a"\ngraph_url = "https://h/v1.0"',
            "target.graph_url",
            "only scheme, host and port",
        ),
        ('client_secret = "a"\npace_concurrency = 0', "target.pace_concurrency", "between 1 and 64"),
        (
            'client_secret = "a"\nclient_secrett = "b"',
            "target.client_secrett",
            'did you mean "client_secret"',
        ),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, target: str, key: str, words: str) -> None:
    problem = error(tmp_path, target)
    assert problem.key == key and words in problem.message
    if key != "target":
        assert problem.line == line(target, key.split(".")[1])


def test_graph_keys_are_errors_on_another_type(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    text = PLAN.replace('type = "graph"', 'type = "imap"\nhost = "x.test"\npassword = "p"').format(target="")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.key == "target.tenant_id"


def test_a_literal_secret_never_shows(tmp_path: Path) -> None:
    plan = load(tmp_path, 'client_secret = "s3cret-value"')
    assert "s3cret-value" not in repr(plan)

"""Shared fixtures: real, private Dovecot servers (see tests/servers/dovecot.py).

``tests/`` has no ``__init__.py``, so pytest puts this directory on ``sys.path`` and the
helpers import as ``servers.dovecot`` / ``servers.imapfill``.

``scripts/test`` runs the suite in parallel (pytest-xdist), so nothing here is shared between tests
of different workers: each server has its own ``/tmp`` dir and kernel-chosen free ports, NSD a
loopback range per worker (servers/dns.py), tmux a private socket name, a fault gate its own socket.
With ``--dist loadgroup`` the tests of a module that shares a module-scoped fixture (an LDAP
tree, the DNS lab, the demo's run) stay on one worker, so that fixture is built once; every other
test goes to whichever worker is free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gate import Gate
from servers.dovecot import DovecotServer, find_dovecot
from servers.postgres import PASSWORD_ENV, PostgresServer, find_postgres

#: Users every source/target server has; the master user is ``admin`` (dovecot.MASTER_USER).
USERS = {"alice": "alice-secret", "bob": "bob-secret"}

DovecotFactory = Callable[..., DovecotServer]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist declares it too; declared here, a serial run (-p no:xdist) doesn't warn about it.
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # name2fixturedefs is pytest's own record of which fixtures (and scopes) a test uses.
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(d.scope == "module" for chain in defs.values() for d in chain):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture
def dovecot_factory() -> Iterator[DovecotFactory]:
    """``dovecot_factory(users=..., **DovecotServer options)`` starts a server; all stop at teardown."""
    if find_dovecot() is None:
        # A missing server must never turn the engine tests into silent skips.
        pytest.fail("dovecot is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    servers: list[DovecotServer] = []

    def start(users: dict[str, str] | None = None, **options: Any) -> DovecotServer:
        server = DovecotServer(**options)
        for name, password in (USERS if users is None else users).items():
            server.add_user(name, password)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        # pytest shows captured teardown output only when the test failed: the log is there then.
        print(f"--- dovecot log ({server.root}) ---\n{server.log_text()}")
        server.stop()


@pytest.fixture
def source_dovecot(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory()


@pytest.fixture
def target_dovecot(dovecot_factory: DovecotFactory) -> DovecotServer:
    return dovecot_factory()


@pytest.fixture
def gate() -> Iterator[Gate]:
    """A gate for ``hold-<point>:N`` faults (tests/gate.py); opened at teardown, so no run stays held."""
    opened = Gate()
    yield opened
    opened.open()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL cluster per test session (per xdist worker); each test takes a database."""
    if find_postgres() is None:
        pytest.fail("postgresql is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty database's ``[state] url``; its password is in ``$PASSWORD_ENV`` (a plan says
    ``[state] password = "env:CUTOVER_TEST_PGPASS"``)."""
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    return postgres_server.url(postgres_server.database())

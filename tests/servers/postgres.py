"""A private PostgreSQL cluster, started as a subprocess (``postgres -D <data>`` in the foreground).

Everything lives under one short temp dir (``/tmp/pgXXXXXXXX``)::

    data/        the cluster (initdb; owned by the account postgres runs as, 0700)
    run/         unix socket dir (0700: nobody else on the machine reaches it)
    password     the superuser's throwaway password (for initdb --pwfile)
    stderr.log   everything the server printed

PostgreSQL refuses to run as root, so as root it runs as Debian's ``postgres`` system account (the
package creates it, and no other test server uses it); as an ordinary user it runs as that user. It
listens on 127.0.0.1 only, on a free port, with password (SCRAM) authentication over TCP, so the
store's password path is the one exercised. ``fsync=off``: the cluster is thrown away with the test
session, and a test must not wait for a disk.

One cluster serves a whole test session; ``database()`` makes a fresh, empty database per test
(CREATE DATABASE copies ``template0``: a few milliseconds, no second cluster).
"""

from __future__ import annotations

import itertools
import os
import pwd
import subprocess
from pathlib import Path

from servers.process import HOST, ServerProcess, free_ports, log_says

SUPERUSER = "cutover"
PASSWORD = "pg-test-secret"
#: Where tests put the password for a plan's ``[state] password = "env:..."``.
PASSWORD_ENV = "CUTOVER_TEST_PGPASS"
_BIN_DIRS = ("/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/17/bin")


class PostgresError(RuntimeError):
    """PostgreSQL could not be started (the message carries its log)."""


def find_postgres() -> str | None:
    return PostgresServer.find()


class PostgresServer(ServerProcess):
    name = "postgres"
    binaries = ()
    candidates = tuple(f"{d}/postgres" for d in _BIN_DIRS)
    error = PostgresError
    temp_prefix = "pg"
    # As root the server runs under another uid, which clears its parent-death signal: the watchdog
    # (servers.process) keeps it and passes SIGTERM on.
    watchdog = os.geteuid() == 0

    def __init__(self, *, start_timeout: float = 30.0) -> None:
        super().__init__(start_timeout=start_timeout)
        self.port = 0
        self.password = PASSWORD
        self._names = itertools.count(1)

    # -- what a test uses --

    def url(self, database: str = "postgres") -> str:
        """The store's ``[state] url`` for one database of this cluster (no password in it)."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its name."""
        name = f"{prefix}{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement through psql over the private socket, as the superuser; its output."""
        done = subprocess.run(
            [self._tool("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(self._dir / "run"),
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", statement],
            capture_output=True, text=True, timeout=60, user=self._account_uid(),
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(f"psql {statement!r}: {done.stderr.strip()}")
        return done.stdout

    # -- ServerProcess --

    def _prepare(self, binary: str) -> None:
        root = self._dir
        (root / "run").mkdir(mode=0o700)
        (root / "password").write_text(PASSWORD + "\n")
        uid, gid = self._account_uid(), self._account_gid()
        for path in (root, root / "run", root / "password"):
            os.chown(path, uid, gid)
        done = subprocess.run(
            [self._tool("initdb"), "-D", str(root / "data"), "-U", SUPERUSER, "--pwfile", str(root / "password"),
             "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
             "--no-instructions"],
            capture_output=True, text=True, timeout=120, user=uid,
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(f"initdb failed:\n{done.stdout}{done.stderr}")
        (self.port,) = free_ports(1)

    def _argv(self, binary: str) -> list[str]:
        root = self._dir
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(root / "run"),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
        }
        argv = [binary, "-D", str(root / "data")]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        if os.geteuid() == 0:
            argv = ["setpriv", f"--reuid={self._account_uid()}", f"--regid={self._account_gid()}", "--init-groups",
                    *argv]  # fmt: skip
        return argv

    def _ports(self) -> list[int]:
        return [self.port]

    def _ready(self) -> bool:
        return log_says(self._dir / self.console_log, "ready to accept connections") and super()._ready()

    # -- helpers --

    def _tool(self, name: str) -> str:
        return str(Path(self.find() or "postgres").parent / name)

    @classmethod
    def _account_gid(cls) -> int:
        return pwd.getpwuid(cls._account_uid()).pw_gid

    @staticmethod
    def _account_uid() -> int:
        """Who the cluster runs as: ``postgres`` when we are root (it refuses root), else ourselves."""
        if os.geteuid() != 0:
            return os.geteuid()
        try:
            return pwd.getpwnam("postgres").pw_uid
        except KeyError:
            raise PostgresError(
                "no postgres account: install Debian's postgresql package (./scripts/setup --test)"
            ) from None

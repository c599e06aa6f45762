"""Our routing proxy as a bench peer: ``cutover proxy --plan plan.toml`` with a plan that routes the
bench's users as the other peers' maps do (odd users to the target, the down user to a dead port)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from servers.process import HOST, ServerProcess, free_ports

from proxy.servers import BackendDovecot

REPO = Path(__file__).resolve().parent.parent.parent
CUTOVER = [sys.executable, "-m", "cockpit.cli"]


def ours_available() -> str | None:
    """Why ``cutover proxy`` can't run from this checkout, or None."""
    probe = subprocess.run([*CUTOVER, "proxy", "--help"], capture_output=True, text=True, cwd=REPO,
                           env=_env(), check=False)  # fmt: skip
    return None if probe.returncode == 0 else "this checkout has no `cutover proxy` yet"


def _env(checkout: Path = REPO) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH", "")]))
    # Else ``python -m`` puts the working directory first: run from this repository, ours-before
    # would import this checkout's code rather than the one it names.
    env["PYTHONSAFEPATH"] = "1"
    env.setdefault("SRC_MASTER_PW", "unused")
    env.setdefault("DST_MASTER_PW", "unused")
    return env


class OursProxy(ServerProcess):
    name = "cutover proxy"
    binaries = (sys.executable,)
    temp_prefix = "pbcp"

    def __init__(
        self,
        work: Path,
        legacy: BackendDovecot,
        target: BackendDovecot,
        dead: int,
        services: list[str],
        users: list[str],
        down_user: str,
        profile: str | None = None,
        uvloop: bool = False,
        workers: int | None = None,
        checkout: Path = REPO,
    ) -> None:
        super().__init__(start_timeout=30.0)
        self.checkout = checkout  # whose code runs: this one, or another (the bench's ``--before``)
        self.profile = profile
        self.uvloop = uvloop
        self.workers = workers  # [proxy] workers (None: the plan's default, one process)
        self.work = work
        self.legacy, self.target, self.dead = legacy, target, dead
        self.services = services
        self.users, self.down_user = users, down_user
        self.ports: dict[str, int] = {}

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _prepare(self, binary: str) -> None:
        root = self._dir
        self.ports = dict(zip(self.services, free_ports(len(self.services)), strict=True))
        (root / "mailboxes.csv").write_text(
            "source,target,wave\n" + "".join(f"{u},{u},w\n" for u in self.users)
        )
        listen = "".join(f"{service}_port = {port}\n" for service, port in self.ports.items())

        def backend(name: str, server: BackendDovecot | None) -> str:
            lines = [f"[proxy.backends.{name}]"]
            for service in self.services:
                port = self.dead if server is None else _port(server, service)
                lines += [f'{service} = "{HOST}:{port}"', f'{service}_tls = "none"']
            return "\n".join(lines) + "\n"

        static = ", ".join(
            [f'"{u}" = "target"' for i, u in enumerate(self.users) if i % 2]
            + [f'"{self.down_user}" = "dead"']
        )
        (root / "plan.toml").write_text(f"""
[source]
type = "imap"
host = "{HOST}"
port = {self.legacy.imap_port}
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:SRC_MASTER_PW"

[target]
type = "imap"
host = "{HOST}"
port = {self.target.imap_port}
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:DST_MASTER_PW"

[mailboxes]
csv = "mailboxes.csv"

[proxy]
listen = "{HOST}"
{listen}{"" if self.workers is None else f"workers = {self.workers}"}
{backend("legacy", self.legacy)}
{backend("target", self.target)}
{backend("dead", None)}
[proxy.routing]
default = "legacy"
static = {{ {static} }}

[proxy.limits]
max_unauthenticated_per_address = 100000
lockout_failures = 1000000
""")

    def _argv(self, binary: str) -> list[str]:
        command = ["proxy", "--plan", str(self._dir / "plan.toml")]
        if self.profile:  # cProfile counting CPU time (bench/profile_run.py), written when it stops
            runner = str(REPO / "bench" / "profile_run.py")
            return [sys.executable, runner, "-o", self.profile, "--timer", "cpu", "--", *command]
        if self.uvloop:  # the same proxy on uvloop's event loop (asyncio.run picks the installed policy)
            return [sys.executable, "-c", _UVLOOP, *command]
        return [*CUTOVER, *command]

    def start(self) -> OursProxy:
        # ServerProcess launches with the inherited environment; the plan's secrets and the checkout
        # on the path are set here.
        saved = dict(os.environ)
        os.environ.update(_env(self.checkout))
        try:
            super().start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return self

    def _ports(self) -> list[int]:
        return list(self.ports.values())

    def stop(self) -> None:
        if self.profile and self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # it stops itself; the profile is written on the way out
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(60)
        super().stop()

    def _ready(self) -> bool:
        # It prints one line per listener once all are bound; a service it doesn't serve yet (SMTP
        # submission before its listener exists) is left out of the bench's rows.
        said = (self._dir / self.console_log).read_text(errors="replace")
        bound = {int(m) for m in re.findall(r"^cutover proxy: \S+ \(\S+\) on \S+:(\d+)$", said, re.M)}
        if not bound:
            return False
        self.ports = {s: p for s, p in self.ports.items() if p in bound}
        return super()._ready()


_UVLOOP = "import sys, uvloop; uvloop.install(); from cockpit.cli import main; sys.exit(main(sys.argv[1:]))"


def uvloop_available() -> str | None:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "uvloop is not installed (pip install uvloop)"
    return None


def _port(server: BackendDovecot, service: str) -> int:
    return {"imap": server.imap_port, "pop3": server.pop3_port, "submission": server.submission_port}[service]

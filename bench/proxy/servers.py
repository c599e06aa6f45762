"""The servers of the proxy bench: the two backend Dovecots and every peer in front of them.

Each is a ``ServerProcess`` of the test suite (tests/servers/process.py): its own temp dir, free
loopback ports, its whole process group stopped at the end. ``pid`` is the root of the process tree
whose CPU and memory the bench reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from servers.dovecot import DovecotServer
from servers.process import HOST, ServerProcess, free_ports

#: Login processes that never fork per login, mail processes that are reused and serve several
#: clients each, limits raised for 2,000 idle sessions; logins fail fast on a bad password.
_TUNING = """
default_process_limit = 1000
default_client_limit = 20000
default_vsz_limit = 1G
auth_verbose = no
service imap-login {{
  service_count = 0
  process_min_avail = 2
  client_limit = 5000
}}
service pop3-login {{
  service_count = 0
  process_min_avail = 2
  client_limit = 5000
}}
service imap {{
  service_count = 0
  client_limit = 25
  process_limit = 400
  process_min_avail = 4
}}
service pop3 {{
  service_count = 0
  client_limit = 25
  process_limit = 400
}}
service auth {{
  client_limit = 20000
}}
service anvil {{
  client_limit = 20000
}}
protocol imap {{
  mail_max_userip_connections = 100000
}}
protocol pop3 {{
  mail_max_userip_connections = 100000
}}
{submission}
"""

_SUBMISSION = """
protocols = imap pop3 submission
hostname = bench.example
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
submission_relay_trusted = yes
service submission-login {{
  service_count = 0
  process_min_avail = 2
  client_limit = 5000
  inet_listener submission {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service submission {{
  service_count = 0
  client_limit = 25
  process_limit = 400
}}
protocol submission {{
  mail_max_userip_connections = 100000
}}
"""


def has_submissiond() -> bool:
    return Path("/usr/lib/dovecot/submission").exists()


class BackendDovecot(DovecotServer):
    """A backend: mail on tmpfs, tuned as ``_TUNING`` says; SMTP submission when installed."""

    def __init__(self, name: str, relay_port: int) -> None:
        self.shm = Path(tempfile.mkdtemp(prefix=f"pb-{name}-", dir="/dev/shm"))
        os.chown(self.shm, 65534, 65534)
        super().__init__(mail_location=f"maildir:{self.shm}/%u/Maildir")
        self.submission_port = 0
        self.relay_port = relay_port

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _prepare(self, binary: str) -> None:
        super()._prepare(binary)
        submission = ""
        if has_submissiond():
            (self.submission_port,) = free_ports(1)
            submission = _SUBMISSION.format(port=self.submission_port, relay_port=self.relay_port)
        self.extra_conf = _TUNING.format(submission=submission)
        (self._dir / "dovecot.conf").write_text(self._render_conf(None))

    def _ports(self) -> list[int]:
        return [*super()._ports(), *([self.submission_port] if self.submission_port else [])]

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.shm, ignore_errors=True)


class DovecotProxy(ServerProcess):
    """Dovecot's own proxy: a passdb of ``proxy=y`` entries naming each user's backend, no mail."""

    name = "dovecot proxy"
    binaries, candidates = ("dovecot",), ("/usr/sbin/dovecot",)
    temp_prefix = "pbdp"
    log_files = ("dovecot.log", "stderr.log")

    def __init__(self, routes: dict[str, dict[str, int]], submission: bool) -> None:
        """``routes``: service -> user -> backend port."""
        super().__init__(start_timeout=20.0)
        self.routes = routes
        self.submission = submission
        self.ports: dict[str, int] = {}

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _prepare(self, binary: str) -> None:
        root = self._dir
        root.chmod(0o711)
        for sub in ("run", "state"):
            (root / sub).mkdir()
        services = [
            s
            for s in ("imap", "pop3", "submission")
            if s in self.routes and (s != "submission" or self.submission)
        ]
        self.ports = dict(zip(services, free_ports(len(services)), strict=True))
        for service in services:
            lines = [
                f"{user}:::::::proxy=y nopassword=y host={HOST} port={port}\n"
                for user, port in self.routes[service].items()
            ]
            path = root / f"proxy-{service}"
            path.write_text("".join(lines))
            path.chmod(0o644)
        listeners = "\n".join(
            f"""service {service}-login {{
  service_count = 0
  process_min_avail = 2
  client_limit = 10000
  inet_listener {service} {{
    address = {HOST}
    port = {port}
  }}
}}"""
            for service, port in self.ports.items()
        )
        (root / "dovecot.conf").write_text(f"""
instance_name = dovecot-{root.name}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = {" ".join(services)}
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
hostname = bench.example
submission_relay_host = {HOST}
default_process_limit = 1000
default_client_limit = 20000
default_vsz_limit = 1G
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {root}/proxy-%s
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
service auth {{
  client_limit = 30000
}}
service anvil {{
  client_limit = 30000
}}
{listeners}
""")

    def _argv(self, binary: str) -> list[str]:
        return [binary, "-F", "-c", str(self._dir / "dovecot.conf")]

    def _ports(self) -> list[int]:
        return list(self.ports.values())


class NginxMail(ServerProcess):
    """nginx's mail proxy; its auth_http service is a location of the same nginx (a ``map`` from the
    user to the backend's port), so the figures include the auth service."""

    name = "nginx"
    binaries, candidates = ("nginx",), ("/usr/sbin/nginx",)
    temp_prefix = "pbng"
    log_files = ("error.log", "stderr.log")
    module = Path("/usr/lib/nginx/modules/ngx_mail_module.so")

    def __init__(self, routes: dict[str, dict[str, int]], submission: bool) -> None:
        super().__init__(start_timeout=20.0)
        self.routes = routes
        self.submission = submission
        self.ports: dict[str, int] = {}

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _prepare(self, binary: str) -> None:
        root = self._dir
        services = [
            s
            for s in ("imap", "pop3", "submission")
            if s in self.routes and (s != "submission" or self.submission)
        ]
        auth_port, *ports = free_ports(len(services) + 1)
        self.ports = dict(zip(services, ports, strict=True))
        maps = "\n".join(
            f"  map $http_auth_user $port_{service} {{\n"
            + "".join(f"    {user} {port};\n" for user, port in self.routes[service].items())
            + "  }"
            for service in services
        )
        smtp_auth = "  smtp_auth plain login;\n  xclient off;\n" if self.submission else ""
        servers = "\n".join(
            f"  server {{\n    listen {HOST}:{port};\n    protocol {'smtp' if s == 'submission' else s};\n"
            f"    auth_http {HOST}:{auth_port}/{s};\n  }}"
            for s, port in self.ports.items()
        )
        locations = "\n".join(
            f"    location = /{s} {{\n      add_header Auth-Status OK;\n      add_header Auth-Server {HOST};\n"
            f"      add_header Auth-Port $port_{s};\n      return 204;\n    }}"
            for s in services
        )
        (root / "nginx.conf").write_text(f"""
load_module {self.module};
user root;
worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
worker_rlimit_nofile 20000;
events {{
  worker_connections 10000;
}}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
{maps}
  server {{
    listen {HOST}:{auth_port};
{locations}
  }}
}}
mail {{
  proxy_pass_error_message on;
  proxy_buffer 64k;
  imap_auth plain login;
  pop3_auth plain;
{smtp_auth}{servers}
}}
""")

    def _argv(self, binary: str) -> list[str]:
        return [binary, "-p", str(self._dir), "-e", str(self._dir / "error.log"), "-c",
                str(self._dir / "nginx.conf"), "-g", "daemon off;"]  # fmt: skip

    def _ports(self) -> list[int]:
        return list(self.ports.values())


class Perdition(ServerProcess):
    """perdition, one daemon per protocol (it forks a process per connection); a POSIX-regex map
    sends each user to their backend."""

    name = "perdition"
    binaries, candidates = ("perdition",), ("/usr/sbin/perdition",)
    temp_prefix = "pbpd"
    regex_map = "/usr/lib/x86_64-linux-gnu/libperditiondb_posix_regex.so.0"

    def __init__(self, protocol: str, routes: dict[str, int]) -> None:
        super().__init__(start_timeout=20.0)
        self.protocol = protocol  # IMAP4 | POP3
        self.routes = routes
        self.port = 0

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _prepare(self, binary: str) -> None:
        root = self._dir
        root.chmod(0o755)
        (self.port,) = free_ports(1)
        lines = [f"^{user}$: {HOST}:{port}\n" for user, port in self.routes.items()]
        (root / "popmap.re").write_text("".join(lines))
        (root / "popmap.re").chmod(0o644)
        (root / "perdition.conf").write_text("")

    def _argv(self, binary: str) -> list[str]:
        return [binary, "--no_daemon", "-f", str(self._dir / "perdition.conf"), "-P", self.protocol,
                "-b", f"{HOST}:{self.port}", "-n", "-o", "-M", self.regex_map, "-m",
                str(self._dir / "popmap.re"), "--pid_file", str(self._dir / "perdition.pid")]  # fmt: skip

    def _ports(self) -> list[int]:
        return [self.port]

"""A private Exim SMTP hub on loopback: banner, EHLO with SIZE, STARTTLS with a chosen certificate.

Why Exim (Debian's ``exim4-daemon-light``) and not OpenSMTPD or Postfix: OpenSMTPD's spool
(/var/spool/smtpd) and control socket are compiled in, so a second instance refuses to start
next to the first (or next to the packaged service); Postfix needs a whole config directory,
its master, postdrop groups and a queue per instance. Exim takes everything from one config
file given with ``-C`` (spool, logs, pid file, listening address, banner, size limit, TLS) and
runs in the foreground with ``-bdf``: as many throwaway hubs as a test wants, each in one temp
dir.

Exim needs root to start like this (``-C`` keeps privilege only for root); the suite runs as
root in CI. The daemon then switches to the ``Debian-exim`` user, which clears
``PR_SET_PDEATHSIG``, so it runs under a tiny Python watchdog that keeps the death signal and
passes it on: a killed pytest still takes the hub down. It accepts no mail at all (every RCPT
is refused): the checks only ever say EHLO, STARTTLS and QUIT.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from servers.dovecot import HOST, _die_with_parent, _free_ports, _port_open, _stop_process_group
from servers.https import Leaf

_EXIM_CANDIDATES = ("/usr/sbin/exim4", "/usr/sbin/exim")
_EXIM_USERS = ("Debian-exim", "exim")
_START_ATTEMPTS = 3

# Runs Exim as its child and forwards SIGTERM; its own parent-death signal (set before exec)
# survives because the watchdog never changes uid, unlike Exim.
_WATCHDOG = """
import signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
signal.signal(signal.SIGTERM, lambda *_: child.terminate())
sys.exit(child.wait())
"""


class EximError(RuntimeError):
    """Exim could not be started (the message carries its log)."""


def find_exim() -> str | None:
    found = shutil.which("exim4") or shutil.which("exim")
    if found:
        return found
    return next((p for p in _EXIM_CANDIDATES if os.access(p, os.X_OK)), None)


def _exim_account() -> pwd.struct_passwd:
    for name in _EXIM_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EximError(f"none of the users {_EXIM_USERS} exists: is exim4-daemon-light installed?")


class EximServer:
    """One private Exim listening on ``127.0.0.1:<port>``.

    ``tls=None`` offers no STARTTLS; ``size_limit`` is Exim's ``message_size_limit`` ("1M" is
    advertised as ``SIZE 1048576``); ``hostname`` appears in the banner and the EHLO reply.
    ``unreadable_key=True`` leaves the TLS key readable by root only: Exim still offers STARTTLS
    but answers it ``454 TLS currently unavailable``, as a hub with a broken certificate binding does.
    """

    host = HOST

    def __init__(
        self,
        *,
        tls: Leaf | None = None,
        size_limit: str = "1M",
        hostname: str = "hub.cutover.test",
        unreadable_key: bool = False,
        binary: str | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.tls = tls
        self.size_limit = size_limit
        self.hostname = hostname
        self.unreadable_key = unreadable_key
        self.start_timeout = start_timeout
        self.port = 0
        self.root: Path | None = None
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EximServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def banner(self) -> str:
        """The greeting after ``220 ``, as Exim sends it."""
        return f"{self.hostname} ESMTP cutover test hub"

    def log_text(self) -> str:
        if self.root is None:
            return ""
        files = [self.root / "stderr.log", *sorted((self.root / "log").glob("*log"))]
        return "".join(f.read_text(errors="replace") for f in files if f.exists())

    def start(self) -> EximServer:
        binary = self._binary or find_exim()
        if binary is None:
            raise EximError("exim is not installed: run ./scripts/test to install it")
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._prepare()
                self._launch(binary)
                return self
            except EximError as err:
                self.stop()
                if "Address already in use" not in str(err) or attempt == _START_ATTEMPTS:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            _stop_process_group(proc)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _prepare(self) -> None:
        account = _exim_account()
        self.root = root = Path(tempfile.mkdtemp(prefix="ex", dir="/tmp"))
        root.chmod(0o755)
        # The daemon runs as the exim user: spool, logs, pid file and the TLS key must be its own.
        for sub in ("spool", "log", "run", "tls"):
            (root / sub).mkdir(mode=0o750)
            os.chown(root / sub, account.pw_uid, account.pw_gid)
        if self.tls is not None:
            for name, source in (("cert.pem", self.tls.cert), ("key.pem", self.tls.key)):
                shutil.copyfile(source, root / "tls" / name)
                (root / "tls" / name).chmod(0o600)
                if not (self.unreadable_key and name == "key.pem"):
                    os.chown(root / "tls" / name, account.pw_uid, account.pw_gid)
        (self.port,) = _free_ports(1)
        conf = root / "exim.conf"
        conf.write_text(self._render_conf(account))
        conf.chmod(0o644)  # Exim refuses a config anyone but root may write

    def _launch(self, binary: str) -> None:
        assert self.root is not None
        root = self.root
        with (root / "stderr.log").open("wb") as stderr:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, binary, "-C", str(root / "exim.conf"), "-bdf"],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        atexit.register(self.stop)
        mainlog = root / "log" / "mainlog"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EximError(f"exim exited with {self._proc.returncode}:\n{self.log_text()}")
            # "daemon started" is logged once the listener is bound: the port is ours.
            started = mainlog.exists() and "daemon started" in mainlog.read_text(errors="replace")
            if started and _port_open(self.port):
                return
            time.sleep(0.02)
        raise EximError(f"exim not listening on {self.port} after {self.start_timeout}s:\n{self.log_text()}")

    def _render_conf(self, account: pwd.struct_passwd) -> str:
        root = self.root
        tls = (
            f"tls_advertise_hosts = *\ntls_certificate = {root}/tls/cert.pem\n"
            f"tls_privatekey = {root}/tls/key.pem\n"
            if self.tls is not None
            else "tls_advertise_hosts =\n"
        )
        return f"""# Generated by tests/servers/smtp.py for one test; deleted on stop().
keep_environment =
exim_user = {account.pw_name}
exim_group = {account.pw_gid}
primary_hostname = {self.hostname}
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
pid_file_path = {root}/run/exim.pid
local_interfaces = <; {HOST}.{self.port}
smtp_banner = {self.banner} $tod_full
message_size_limit = {self.size_limit}
host_lookup =
rfc1413_hosts =
{tls}
acl_smtp_rcpt = acl_refuse_all

begin acl

acl_refuse_all:
  deny message = this test hub accepts no mail
"""

"""A private Dovecot instance per test, started as a subprocess (``dovecot -F -c <conf>``).

Everything lives under one short temp dir (``/tmp/dcXXXXXXXX``; unix socket paths are limited
to 108 bytes, pytest's ``tmp_path`` is far too long)::

    dovecot.conf   generated config       users / masters   passwd-files (re-read on change)
    run/           base_dir (sockets)     state/            state_dir
    mail/<user>/   home, Maildir below    tls/              throwaway CA + server cert
    dovecot.log    everything Dovecot logs; stderr.log: what it printed before logging was up

Which uid the mail processes run as
-----------------------------------
The suite runs as root, yet tests simulate "the server refuses to SELECT this folder" with
``chmod 000`` on a Maildir folder; root ignores file modes, so the mail processes must not be
root. We use ``nobody``/``nogroup`` (65534/65534): both exist on every fresh Debian/Ubuntu and
no real service owns files as them. ``first_valid_uid``/``first_valid_gid`` are set to exactly
that uid/gid so no userdb entry can ever make a mail process run as anyone else, and the mail
root is chowned to it. When the suite runs as an ordinary user, Dovecot runs as that user
(internal, login and mail processes alike, no chroot), which makes ``chmod 000`` work too.

Dovecot's own service users (``dovecot``, ``dovenull``) come with the Debian package and are
used as-is when running as root. The auth process runs as ``dovecot`` and reads the
passwd-files, so the temp dir is 0711 and the passwd-files 0644: they hold throwaway test
passwords only.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime as dt
import grp
import ipaddress
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
MASTER_USER = "admin"
MASTER_PASSWORD = "master-secret"
MASTER_SEPARATOR = "*"

# Debian installs the binary in /usr/sbin, which is not on an ordinary user's PATH.
_DOVECOT_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
# Services Dovecot chroots by default (doveconf -a) that an unprivileged instance may start.
_CHROOTED_SERVICES = ("anvil", "ipc", "old-stats", "imap-login", "pop3-login")
# Free ports are picked before Dovecot binds them: another process may win the race.
_START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class DovecotError(RuntimeError):
    """Dovecot could not be started (the message carries its log)."""


def find_dovecot() -> str | None:
    """Path of the dovecot binary, or None when it isn't installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    return next((p for p in _DOVECOT_CANDIDATES if os.access(p, os.X_OK)), None)


@dataclass(frozen=True)
class _RunAs:
    """The account mail processes run as."""

    uid: int
    gid: int
    user: str
    group: str


def _mail_account() -> _RunAs:
    if os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        return _RunAs(uid, gid, pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name)
    nobody = pwd.getpwnam("nobody")
    try:
        group = grp.getgrnam("nogroup")
    except KeyError:  # Fedora-style systems name it "nobody"
        group = grp.getgrgid(nobody.pw_gid)
    return _RunAs(nobody.pw_uid, group.gr_gid, nobody.pw_name, group.gr_name)


def _free_ports(count: int) -> list[int]:
    # Hold all sockets until every port is known, so the kernel can't hand out one twice.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _check_field(kind: str, value: str) -> None:
    # passwd-file fields are ':'-separated lines; '*' would be read as the master separator.
    if not value or any(c in value for c in ":\n\r") or (kind == "user" and ("*" in value or "/" in value)):
        raise ValueError(f"unusable {kind} for a passwd-file: {value!r}")


def _write_passwd_file(path: Path, lines: list[str]) -> None:
    """Replace the file atomically and make sure Dovecot sees a different mtime.

    Dovecot re-reads a passwd-file when its mtime (whole seconds) or size changed; a same-size
    rewrite within one second would otherwise go unnoticed.
    """
    previous = path.stat().st_mtime if path.exists() else 0.0
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines))
    tmp.chmod(0o644)
    mtime = max(time.time(), int(previous) + 1.0)
    os.utime(tmp, (mtime, mtime))
    tmp.replace(path)


# --- TLS ---------------------------------------------------------------------------------


def make_test_ca(directory: Path, *, use_openssl: bool = False) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a server cert for 127.0.0.1/localhost; return (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not use_openssl:
        try:
            return _make_test_ca_cryptography(directory)
        except ImportError:
            pass
    return _make_test_ca_openssl(directory)


def _make_test_ca_cryptography(directory: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cutover test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    no_usage = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
                **no_usage,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
                **no_usage,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


def _make_test_ca_openssl(directory: Path) -> tuple[Path, Path, Path]:
    ca_file, ca_key = directory / "ca.pem", directory / "ca.key"
    cert_file, key_file, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = DNS:localhost, IP:{HOST}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        ["openssl", "req", "-x509", "-new", *ec, "-keyout", ca_key, "-out", ca_file, "-days", "30",
         "-subj", "/CN=cutover test CA",
         "-addext", "basicConstraints = critical, CA:TRUE, pathlen:0",
         "-addext", "keyUsage = critical, keyCertSign, cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", key_file, "-out", csr, "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_file, "-CAkey", ca_key,
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
         "-extfile", ext, "-out", cert_file],
    ]  # fmt: skip
    for command in commands:
        subprocess.run([str(a) for a in command], check=True, capture_output=True)
    ca_key.unlink()  # nothing else may ever be signed with it
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


# --- the server --------------------------------------------------------------------------


class DovecotServer:
    """One private Dovecot serving IMAP and POP3 (and IMAPS/POP3S with ``tls=True``) on loopback.

    ``mail_location`` defaults to ``maildir:<root>/%u/Maildir``, Maildir++ layout: separator
    ``.``, folder ``A.B`` is the directory ``<Maildir>/.A.B``, and a parent never created itself
    is listed as ``\\Noselect``. Another ``mail_location`` may be given (homes stay
    ``<root>/<user>``, so ``~/...`` works); ``maildir()`` then no longer applies.
    ``quota_max_mail_size``/``quota_storage`` take Dovecot sizes ("1M") and enable the quota
    plugin. ``extra_conf`` is appended verbatim (later settings win; blocks such as
    ``namespace inbox { separator = / }`` merge with ours). The INBOX namespace marks Drafts,
    Junk, Trash, Sent and "Sent Messages" with SPECIAL-USE attributes, like Debian's stock config.
    """

    host = HOST

    def __init__(
        self,
        *,
        master_user: str = MASTER_USER,
        master_password: str = MASTER_PASSWORD,
        mail_location: str | None = None,
        tls: bool = False,
        quota_max_mail_size: str | None = None,
        quota_storage: str | None = None,
        extra_conf: str = "",
        binary: str | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        _check_field("user", master_user)
        _check_field("password", master_password)
        self.master_user = master_user
        self.master_password = master_password
        self.tls = tls
        self.quota_max_mail_size = quota_max_mail_size
        self.quota_storage = quota_storage
        self.extra_conf = extra_conf
        self.start_timeout = start_timeout
        self._mail_location = mail_location
        self._binary = binary
        self._account = _mail_account()
        self.users: dict[str, str] = {}
        self.root: Path | None = None
        self.ca_file: Path | None = None
        self.imap_port = 0
        self.pop3_port = 0
        self.imaps_port: int | None = None
        self.pop3s_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public API --

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def mail_root(self) -> Path:
        return self._dir / "mail"

    @property
    def mail_location(self) -> str:
        return self._mail_location or f"maildir:{self.mail_root}/%u/Maildir"

    def master_login(self, user: str) -> str:
        """The LOGIN name that authenticates as the master user on behalf of ``user``."""
        return f"{user}{MASTER_SEPARATOR}{self.master_user}"

    def maildir(self, user: str) -> Path:
        """The user's Maildir (only meaningful with the default ``mail_location``)."""
        return self.mail_root / user / "Maildir"

    def add_user(self, name: str, password: str) -> None:
        """Add (or re-password) a user; works while running, Dovecot re-reads the file.

        Dovecot's auth process stats a passwd-file at most once per second (and re-reads it
        when mtime or size changed), so on a running server this returns only once the next
        second has begun: from then on every login sees the new entry.
        """
        _check_field("user", name)
        _check_field("password", password)
        self.users[name] = password
        if self.root is None:
            return
        written = time.time()
        self._write_users()
        if self.running:
            time.sleep(max(0.0, math.floor(written) + 1.05 - time.time()))

    def log_text(self) -> str:
        """Everything Dovecot logged so far (plus anything it printed before logging was set up)."""
        if self.root is None:
            return ""
        files = (self._dir / "dovecot.log", self._dir / "stderr.log")
        return "".join(f.read_text(errors="replace") for f in files if f.exists())

    def start(self) -> DovecotServer:
        if self.running:
            raise DovecotError("already running")
        binary = self._binary or find_dovecot()
        if binary is None:
            raise DovecotError("dovecot is not installed: run ./scripts/test to install it")
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._prepare()
                self._launch(binary)
                return self
            except DovecotError as err:
                self.stop()
                if "Address already in use" not in str(err) or attempt == _START_ATTEMPTS:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop Dovecot and every process it started, then delete the temp dir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            _stop_process_group(proc)
        if self.root is not None:
            _remove_tree(self.root)
            self.root = None
            self.ca_file = None

    # -- internals --

    @property
    def _dir(self) -> Path:
        if self.root is None:
            raise DovecotError("not started")
        return self.root

    def _prepare(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dc", dir="/tmp"))
        self.root.chmod(0o711)  # auth (as dovecot) and mail (as nobody) processes traverse it
        for sub in ("run", "state"):
            (self.root / sub).mkdir()
        self.mail_root.mkdir(mode=0o700)
        os.chown(self.mail_root, self._account.uid, self._account.gid)
        self.imap_port, self.pop3_port, imaps, pop3s = _free_ports(4)
        self.imaps_port = self.pop3s_port = None
        tls_files = None
        if self.tls:
            self.imaps_port, self.pop3s_port = imaps, pop3s
            tls_files = make_test_ca(self.root / "tls")
            self.ca_file = tls_files[0]
        _write_passwd_file(self.root / "masters", [f"{self.master_user}:{{PLAIN}}{self.master_password}\n"])
        self._write_users()
        (self.root / "dovecot.conf").write_text(self._render_conf(tls_files))

    def _write_users(self) -> None:
        acct = self._account
        lines = [
            f"{name}:{{PLAIN}}{password}:{acct.uid}:{acct.gid}::{self.mail_root / name}::\n"
            for name, password in self.users.items()
        ]
        _write_passwd_file(self._dir / "users", lines)

    def _launch(self, binary: str) -> None:
        conf, log = self._dir / "dovecot.conf", self._dir / "dovecot.log"
        with (self._dir / "stderr.log").open("wb") as stderr:
            # Own process group: stop() can signal Dovecot's children directly (see there).
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(conf)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        atexit.register(self.stop)  # a crashed test run must not leave servers behind
        ports = [p for p in (self.imap_port, self.pop3_port, self.imaps_port, self.pop3s_port) if p]
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DovecotError(f"dovecot exited with {self._proc.returncode}:\n{self.log_text()}")
            # "starting up" is logged once all listeners are bound: the ports are ours.
            started = log.exists() and "starting up" in log.read_text(errors="replace")
            if started and all(_port_open(p) for p in ports):
                return
            time.sleep(0.02)
        waited = f"dovecot not listening on {ports} after {self.start_timeout}s"
        raise DovecotError(f"{waited}:\n{self.log_text()}")

    def _render_conf(self, tls_files: tuple[Path, Path, Path] | None) -> str:
        root, acct = self._dir, self._account
        imaps, pop3s = self.imaps_port or 0, self.pop3s_port or 0  # port 0 = listener off
        lines = [
            "# Generated by tests/servers/dovecot.py for one test; deleted on stop().",
            f"instance_name = dovecot-{root.name}",
            f"base_dir = {root}/run",
            f"state_dir = {root}/state",
            f"log_path = {root}/dovecot.log",
            "protocols = imap pop3",
            f"listen = {HOST}",
            "auth_verbose = yes",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            f"auth_master_user_separator = {MASTER_SEPARATOR}",
            f"mail_location = {self.mail_location}",
            f"first_valid_uid = {acct.uid}",
            f"first_valid_gid = {acct.gid}",
            "pop3_uidl_format = %08Xu%08Xv",
        ]
        if tls_files is None:
            lines.append("ssl = no")
        else:
            _ca, cert, key = tls_files
            lines += ["ssl = yes", f"ssl_cert = <{cert}", f"ssl_key = <{key}"]
        if os.geteuid() != 0:
            # Unprivileged: every process runs as us and nothing can chroot.
            lines += [
                f"default_internal_user = {acct.user}",
                f"default_internal_group = {acct.group}",
                f"default_login_user = {acct.user}",
                *(f"service {name} {{\n  chroot =\n}}" for name in _CHROOTED_SERVICES),
            ]
        lines.append(f"""
passdb {{
  driver = passwd-file
  args = {root}/masters
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}

namespace inbox {{
  inbox = yes
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox "Sent Messages" {{
    special_use = \\Sent
  }}
}}

service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
# Wrong-password tests: answer in ~0.5 s instead of 2 s doubling up to 15 s per failure from
# the same IP. The NO [AUTHENTICATIONFAILED] reply itself is unchanged.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")
        lines.append(self._quota_conf())
        lines.append(self.extra_conf)
        return "\n".join(lines) + "\n"

    def _quota_conf(self) -> str:
        if self.quota_max_mail_size is None and self.quota_storage is None:
            return ""
        max_size = self.quota_max_mail_size or 0  # 0 = no limit
        storage = self.quota_storage or 0
        return f"""
mail_plugins = $mail_plugins quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage={storage}
  quota_max_mail_size = {max_size}
}}
"""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM Dovecot when the test process dies, even by SIGKILL.

    Without it a killed pytest (CI timeout, kill -9) leaves the servers running forever.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM Dovecot's whole process group until the master exits; SIGKILL the rest after 1 s.

    Signalling only the master takes 1 s, 6 s right after startup: a child still between
    fork and exec misses the SIGTERM and the master waits for it. Re-sending to the group
    catches it once it has exec'd. The master stays unreaped (WNOWAIT) until the end, so its
    pid, which is the group id, can't be reused by an unrelated process meanwhile.
    """
    if proc.returncode is not None:
        return  # already reaped (it exited by itself): its children follow a dead master
    pgid = proc.pid
    deadline = time.monotonic() + 1.0
    next_term = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_term:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            next_term = time.monotonic() + 0.1
        if os.waitid(os.P_PID, pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # stragglers, or everyone if the master hung
    proc.wait()


def _remove_tree(path: Path) -> None:
    # As a non-root user a chmod-000 folder (ours: mail runs as us) must be opened up first.
    for dirpath, dirnames, _files in os.walk(path):
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            if not os.path.islink(sub):
                try:
                    os.chmod(sub, 0o700)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)

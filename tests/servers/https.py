"""A private nginx serving HTTPS on loopback, one port per certificate, plus a throwaway CA.

nginx runs in the foreground with its own prefix (``nginx -p <root> -c <root>/nginx.conf
-e <root>/error.log -g 'daemon off;'``): config, pid file, logs and temp paths all live under one
temp dir and never touch /etc/nginx or /var/log/nginx. The master stays root (workers drop to
nginx's default ``nobody``), so ``PR_SET_PDEATHSIG`` survives and a killed pytest takes it down.

Every site answers like an Exchange front end would on the paths the checks probe::

    /EWS/Exchange.asmx, /autodiscover/autodiscover.xml   401 with WWW-Authenticate: Negotiate, NTLM
    /owa                                                 200, a small HTML page
    /down                                                503 (a dead back end behind a live proxy)
    anything else                                        404

``ThrowawayCA`` issues the certificates: valid for years, about to expire, already expired or
for another name. Its key never leaves memory; the tests trust ``ca_file`` only.
"""

from __future__ import annotations

import atexit
import datetime as dt
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from servers.dovecot import HOST, _die_with_parent, _free_ports, _port_open, _stop_process_group

_NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
_START_ATTEMPTS = 3


class NginxError(RuntimeError):
    """nginx could not be started (the message carries its log)."""


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in _NGINX_CANDIDATES if Path(p).exists()), None)


# --- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """A server certificate and its key, as PEM files."""

    cert: Path
    key: Path
    not_after: dt.datetime


_CA_KEY_USAGE = dict.fromkeys(
    ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
     "encipher_only", "decipher_only"),
    False,
) | {"key_cert_sign": True, "crl_sign": True}  # fmt: skip


class ThrowawayCA:
    """A CA that lives for one test module; issues server certificates with chosen names and lives."""

    def __init__(self, directory: Path, name: str = "cutover capacity test CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        now = dt.datetime.now(dt.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=30))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        label: str,
        *,
        days: float,
        dns: Sequence[str] = ("localhost",),
        ips: Sequence[str] = (HOST,),
    ) -> Leaf:
        """A server certificate valid until ``days`` from now (negative: already expired)."""
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)
        not_after = now + dt.timedelta(days=days)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or ips)[0])]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, not_after) - dt.timedelta(days=30))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_file, key_file = self.directory / f"{label}.pem", self.directory / f"{label}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        return Leaf(cert_file, key_file, not_after)


# --- the server --------------------------------------------------------------------------


class NginxServer:
    """One private nginx with an HTTPS site per certificate: ``url("expiring", "/owa")``."""

    host = HOST

    def __init__(self, sites: Mapping[str, Leaf], *, binary: str | None = None, start_timeout: float = 15.0):
        self.sites = dict(sites)
        self.ports: dict[str, int] = {}
        self.root: Path | None = None
        self.start_timeout = start_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def url(self, site: str, path: str = "/owa") -> str:
        return f"https://{HOST}:{self.ports[site]}{path}"

    def log_text(self) -> str:
        if self.root is None:
            return ""
        files = (self.root / "error.log", self.root / "access.log", self.root / "stderr.log")
        return "".join(f.read_text(errors="replace") for f in files if f.exists())

    def start(self) -> NginxServer:
        binary = self._binary or find_nginx()
        if binary is None:
            raise NginxError("nginx is not installed: run ./scripts/test to install it")
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._prepare()
                self._launch(binary)
                return self
            except NginxError as err:
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
        self.root = Path(tempfile.mkdtemp(prefix="ng", dir="/tmp"))
        self.root.chmod(0o755)  # workers (nobody) write temp files below it
        self.ports = dict(zip(self.sites, _free_ports(len(self.sites)), strict=True))
        (self.root / "nginx.conf").write_text(self._render_conf())

    def _launch(self, binary: str) -> None:
        assert self.root is not None
        root = self.root
        with (root / "stderr.log").open("wb") as stderr:
            self._proc = subprocess.Popen(
                [binary, "-p", f"{root}/", "-c", str(root / "nginx.conf"), "-e", str(root / "error.log"),
                 "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise NginxError(f"nginx exited with {self._proc.returncode}:\n{self.log_text()}")
            if all(_port_open(p) for p in self.ports.values()):
                return
            time.sleep(0.02)
        raise NginxError(
            f"nginx not listening on {self.ports} after {self.start_timeout}s:\n{self.log_text()}"
        )

    def _render_conf(self) -> str:
        root = self.root
        servers = "".join(
            f"""
    server {{
        listen {HOST}:{self.ports[name]} ssl;
        server_name localhost;
        ssl_certificate {leaf.cert};
        ssl_certificate_key {leaf.key};
        location = /EWS/Exchange.asmx {{
            add_header WWW-Authenticate "Negotiate" always;
            add_header WWW-Authenticate "NTLM" always;
            return 401;
        }}
        location = /autodiscover/autodiscover.xml {{
            add_header WWW-Authenticate "Negotiate" always;
            add_header WWW-Authenticate "NTLM" always;
            return 401;
        }}
        location = /owa {{
            default_type text/html;
            return 200 "<html><title>Outlook</title></html>";
        }}
        location = /down {{
            return 503;
        }}
        location / {{
            return 404;
        }}
    }}
"""
            for name, leaf in self.sites.items()
        )
        return f"""# Generated by tests/servers/https.py for one test module; deleted on stop().
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    {servers}
}}
"""

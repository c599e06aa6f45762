"""Real DNS for the DNS checks: private NSD instances, and an HTTPS host for MTA-STS policies.

``NsdServer`` runs ``nsd -d -c <conf>`` (NSD, NLnet Labs' authoritative-only server, Debian package
``nsd``) on one loopback address, port 53 by default, with everything under one temp dir
(``/tmp/nsdXXXXXXXX``)::

    nsd.conf    generated config        zones/<zone>.zone   the zone files given
    nsd.log     what NSD logs           nsd.pid, xfrd.state, zone.list: NSD's own state

No database, no remote control, no privilege drop, no chroot: nothing outside the temp dir is read
or written. Port 53 makes the NS records of the test zones usable as they are (a resolver-style
NS lookup finds the servers), so the instances get random 127.x.y.z addresses instead of random
ports, and binding port 53 needs root, as the suite runs. NSD dies with the test process (parent-
death signal) and is stopped at exit, like the Dovecot fixture.

``PolicyServer`` serves ``/.well-known/mta-sts.txt`` over HTTPS on port 443 of another loopback
address, with a certificate from a throwaway CA for every ``mta-sts.<domain>`` it serves.
"""

from __future__ import annotations

import atexit
import datetime as dt
import http.server
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.query
import dns.rcode

# The process-group stop and parent-death signal Dovecot's fixture uses work for NSD as they are.
from servers.dovecot import _die_with_parent, _stop_process_group

_NSD_CANDIDATES = ("/usr/sbin/nsd", "/usr/local/sbin/nsd")


class NsdError(RuntimeError):
    """NSD could not be started (the message carries its log)."""


def find_nsd() -> str | None:
    found = shutil.which("nsd")
    if found:
        return found
    return next((p for p in _NSD_CANDIDATES if Path(p).exists()), None)


def free_loopback_address(port: int) -> str:
    """A random 127.x.y.z whose ``port`` is free for both UDP and TCP.

    127.0.x.x is left alone: 127.0.0.1 and systemd-resolved's 127.0.0.53 live there.
    """
    for _ in range(50):
        address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
        socks = [socket.socket(socket.AF_INET, kind) for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
        try:
            for sock in socks:
                sock.bind((address, port))
            return address
        except PermissionError:
            raise NsdError(f"binding port {port} needs root: run the tests as ./scripts/test does") from None
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise NsdError(
        f"no free loopback address for port {port}: does a system DNS server listen on *:{port}? "
        "(./scripts/setup stops the packaged nsd; systemctl disable --now nsd)"
    )


class NsdServer:
    """One private NSD answering authoritatively for ``zones`` (zone name → zone file text)."""

    def __init__(
        self, address: str, zones: dict[str, str], *, port: int = 53, start_timeout: float = 10.0
    ) -> None:
        self.address = address
        self.port = port
        self.zones = zones
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``address:port``, as a plan's ``[dns]`` section names servers."""
        return f"{self.address}:{self.port}"

    def __enter__(self) -> NsdServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> NsdServer:
        binary = find_nsd()
        if binary is None:
            raise NsdError("nsd is not installed: run ./scripts/test to install it")
        # No retry on another address: the zones' NS glue names this one.
        try:
            self._prepare()
            self._launch(binary)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            _stop_process_group(proc)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def log_text(self) -> str:
        if self.root is None:
            return ""
        files = (self.root / "nsd.log", self.root / "stderr.log")
        return "".join(f.read_text(errors="replace") for f in files if f.exists())

    def _prepare(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nsd", dir="/tmp"))
        zones_dir = self.root / "zones"
        zones_dir.mkdir()
        stanzas = []
        for zone, text in self.zones.items():
            (zones_dir / f"{zone}.zone").write_text(text)
            stanzas.append(f"zone:\n  name: {zone}\n  zonefile: {zone}.zone\n")
        root = self.root
        (root / "nsd.conf").write_text(
            f"""# Generated by tests/servers/dns.py for one test run; deleted on stop().
server:
  ip-address: {self.address}@{self.port}
  port: {self.port}
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{zones_dir}"
  database: ""
  zonelistfile: "{root}/zone.list"
  xfrdfile: "{root}/xfrd.state"
  xfrdir: "{root}"
  pidfile: "{root}/nsd.pid"
  logfile: "{root}/nsd.log"
  server-count: 1
  verbosity: 1
  hide-version: yes
remote-control:
  control-enable: no
"""
            + "".join(stanzas)
        )

    def _launch(self, binary: str) -> None:
        assert self.root is not None
        with (self.root / "stderr.log").open("wb") as stderr:
            # Own process group: NSD forks a transfer daemon and a server child; stop() gets all three.
            self._proc = subprocess.Popen(
                [binary, "-d", "-c", str(self.root / "nsd.conf")],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        atexit.register(self.stop)  # a crashed test run must not leave servers behind
        zone = next(iter(self.zones))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise NsdError(f"nsd exited with {self._proc.returncode}:\n{self.log_text()}")
            if self._answers(zone):
                return
            time.sleep(0.02)
        raise NsdError(
            f"nsd not answering on {self.endpoint} after {self.start_timeout} s:\n{self.log_text()}"
        )

    def _answers(self, zone: str) -> bool:
        try:
            reply = dns.query.udp(
                dns.message.make_query(zone, "SOA"), self.address, timeout=0.2, port=self.port
            )
        except (OSError, dns.exception.Timeout):
            return False
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


# --- MTA-STS policy host -----------------------------------------------------------------


def make_ca_and_cert(directory: Path, hostnames: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``hostnames``; return (ca, cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cutover DNS test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
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


class _TlsHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext
    policies: dict[str, str]

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        # The handshake happens in the request's thread: a client that never finishes it can't
        # stall the accept loop.
        request.settimeout(5)
        with self.tls.wrap_socket(request, server_side=True) as tls_request:
            super().finish_request(tls_request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # refused handshakes are what some tests provoke


class _PolicyHandler(http.server.BaseHTTPRequestHandler):
    server: _TlsHttpServer

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        policy = self.server.policies.get(host)
        if self.path != "/.well-known/mta-sts.txt" or policy is None:
            self.send_error(404)
            return
        body = policy.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class PolicyServer:
    """HTTPS on ``address``:443 serving ``policies`` (host name → policy text) by Host header."""

    def __init__(self, address: str, policies: dict[str, str], directory: Path) -> None:
        self.address = address
        self.ca_file, cert, key = make_ca_and_cert(directory, sorted(policies))
        self._httpd = _TlsHttpServer((address, 443), _PolicyHandler)
        self._httpd.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._httpd.tls.load_cert_chain(cert, key)
        self._httpd.policies = policies
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="mta-sts")
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

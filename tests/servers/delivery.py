"""A new MX that really delivers: Exim in front of a Dovecot, handing each message to Dovecot's LDA.

Why Exim → LMTP → dovecot-lda → Dovecot: it is what a real target platform does (an MTA accepts for
the domain, queues, and hands over to the store's own delivery agent), so a probe that arrives has
crossed a real SMTP dialogue, a real queue, an LMTP hand-over and Dovecot's own delivery code, and
lands in INBOX with a UID like any mail. Exim is the suite's SMTP server already (servers/smtp.py: one
config file, one temp dir per instance).

Dovecot's LMTP server would be the obvious next hop, but it is the dovecot-lmtpd package, which the
test machines don't have; and Exim can't run the LDA itself: started with ``-C`` it gives up root
("exim user lost privilege for using -C option"), so it can't start a local delivery as the mail
account. So ``LdaRelay``, a small LMTP server in the test process (root, like the suite), takes Exim's
LMTP hand-over and runs ``/usr/lib/dovecot/dovecot-lda -c <the target's dovecot.conf> -d <address>``
per recipient; the LDA looks the user up and drops to the mail account (``nobody``) itself. Its exit
status becomes the recipient's LMTP reply: 0 → 250, 75 (EX_TEMPFAIL) → 451, else 550 with its words.
"""

from __future__ import annotations

import pwd
import socketserver
import subprocess
import threading
from pathlib import Path

from servers.dovecot import DovecotServer
from servers.process import HOST
from servers.smtp import EximServer

LDA = "/usr/lib/dovecot/dovecot-lda"


class _LmtpSession(socketserver.StreamRequestHandler):
    server: _LmtpServer

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 lda-relay LMTP ready")
        recipients: list[str] = []
        sender = ""
        while line := self.rfile.readline():
            verb = line[:4].upper()
            text = line.decode("utf-8", "replace").strip()
            if verb == b"LHLO":
                self.reply("250-lda-relay\r\n250-8BITMIME\r\n250 PIPELINING")
            elif verb == b"MAIL":
                sender, recipients = text.partition(":")[2].split()[0].strip("<>"), []
                self.reply("250 2.1.0 OK")
            elif verb == b"RCPT":
                recipients.append(text.partition(":")[2].split()[0].strip("<>"))
                self.reply("250 2.1.5 OK")
            elif verb == b"DATA":
                self.reply("354 go ahead")
                body = self._read_data()
                for recipient in recipients:
                    self.reply(self.server.relay.deliver(sender, recipient, body))
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:  # RSET, NOOP
                recipients = [] if verb == b"RSET" else recipients
                self.reply("250 OK")

    def _read_data(self) -> bytes:
        lines: list[bytes] = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)


class _LmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    relay: LdaRelay


class LdaRelay:
    """An LMTP server on ``HOST:<port>`` that delivers each recipient with Dovecot's LDA into ``target``."""

    def __init__(self, target: DovecotServer) -> None:
        assert target.root is not None, "start the target Dovecot first"
        self.dovecot_conf: Path = target.root / "dovecot.conf"
        self.deliveries: list[tuple[str, int, str]] = []  # (recipient, LDA exit status, its words)
        self._server = _LmtpServer((HOST, 0), _LmtpSession)
        self._server.relay = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def deliver(self, sender: str, recipient: str, body: bytes) -> str:
        argv = [LDA, "-c", str(self.dovecot_conf), "-d", recipient, "-f", sender or "MAILER-DAEMON"]
        done = subprocess.run(argv, input=body, capture_output=True, timeout=30)
        words = (done.stderr or done.stdout).decode("utf-8", "replace").strip().replace("\n", " ")
        self.deliveries.append((recipient, done.returncode, words))
        if done.returncode == 0:
            return "250 2.0.0 delivered"
        return f"{451 if done.returncode == 75 else 550} dovecot-lda: {words or done.returncode}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class DeliveringMX(EximServer):
    """Exim on ``HOST:<port>`` accepting mail for ``domains`` and handing it by LMTP to ``lmtp_port``
    (an ``LdaRelay``'s, which delivers it into its Dovecot: the recipient's full address is the user).

     ``refuse`` lists domains whose RCPT is
    refused with a 550 carrying ``refusal`` (a target not yet configured for a wave's domain);
    ``hold=True`` accepts and queues but never delivers (a stuck queue; there is no queue runner).
    """

    name = "exim-mx"
    temp_prefix = "mx"

    def __init__(
        self,
        *,
        lmtp_port: int,
        domains: tuple[str, ...],
        refuse: tuple[str, ...] = (),
        refusal: str = "no such domain here",
        hold: bool = False,
        hostname: str = "mx.cutover.test",
        start_timeout: float = 15.0,
    ) -> None:
        super().__init__(hostname=hostname, start_timeout=start_timeout)
        self.lmtp_port = lmtp_port
        self.domains, self.refuse, self.refusal, self.hold = domains, refuse, refusal, hold

    def _render_conf(self, account: pwd.struct_passwd) -> str:
        root = self._dir
        refused = " : ".join(self.refuse) or "!*"
        return f"""# Generated by tests/servers/delivery.py for one test; deleted on stop().
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
tls_advertise_hosts =
queue_only = {"true" if self.hold else "false"}
domainlist wave_domains = {" : ".join(self.domains)}
domainlist refused_domains = {refused}
acl_smtp_rcpt = acl_rcpt

begin acl

acl_rcpt:
  deny domains = +refused_domains
       message = {self.refusal}
  accept domains = +wave_domains
  deny message = relay not permitted

begin routers

to_store:
  driver = accept
  domains = +wave_domains
  transport = lmtp_to_store

begin transports

lmtp_to_store:
  driver = smtp
  protocol = lmtp
  hosts = {HOST}
  hosts_override
  port = {self.lmtp_port}
  allow_localhost

begin retry

* * F,1h,2s
"""

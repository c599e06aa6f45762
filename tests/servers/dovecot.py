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

import grp
import math
import os
import pwd
import time
from dataclasses import dataclass
from pathlib import Path

from servers.process import HOST, ServerProcess, free_ports, log_says
from servers.tlsca import Leaf, ThrowawayCA

MASTER_USER = "admin"
MASTER_PASSWORD = "master-secret"
MASTER_SEPARATOR = "*"

# Services Dovecot chroots by default (doveconf -a) that an unprivileged instance may start.
_CHROOTED_SERVICES = ("anvil", "ipc", "old-stats", "imap-login", "pop3-login")


class DovecotError(RuntimeError):
    """Dovecot could not be started (the message carries its log)."""


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


# --- the server --------------------------------------------------------------------------


class DovecotServer(ServerProcess):
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

    name = "dovecot"
    binaries, candidates = ("dovecot",), ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
    error = DovecotError
    temp_prefix = "dc"
    # Everything Dovecot logged, plus anything it printed before logging was set up.
    log_files = ("dovecot.log", "stderr.log")
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
        super().__init__(binary=binary, start_timeout=start_timeout)
        _check_field("user", master_user)
        _check_field("password", master_password)
        self.master_user = master_user
        self.master_password = master_password
        self.tls = tls
        self.quota_max_mail_size = quota_max_mail_size
        self.quota_storage = quota_storage
        self.extra_conf = extra_conf
        self._mail_location = mail_location
        self._account = _mail_account()
        self.users: dict[str, str] = {}
        self.ca_file: Path | None = None
        self.imap_port = 0
        self.pop3_port = 0
        self.imaps_port: int | None = None
        self.pop3s_port: int | None = None

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

    def stop(self) -> None:
        super().stop()
        self.ca_file = None

    # -- internals --

    def _prepare(self, binary: str) -> None:
        root = self._dir
        root.chmod(0o711)  # auth (as dovecot) and mail (as nobody) processes traverse it
        for sub in ("run", "state"):
            (root / sub).mkdir()
        self.mail_root.mkdir(mode=0o700)
        os.chown(self.mail_root, self._account.uid, self._account.gid)
        self.imap_port, self.pop3_port, imaps, pop3s = free_ports(4)
        self.imaps_port = self.pop3s_port = None
        leaf = None
        if self.tls:
            self.imaps_port, self.pop3s_port = imaps, pop3s
            ca = ThrowawayCA(root / "tls")
            self.ca_file, leaf = ca.ca_file, ca.issue("server", days=30)
        _write_passwd_file(root / "masters", [f"{self.master_user}:{{PLAIN}}{self.master_password}\n"])
        self._write_users()
        (root / "dovecot.conf").write_text(self._render_conf(leaf))

    def _write_users(self) -> None:
        acct = self._account
        lines = [
            f"{name}:{{PLAIN}}{password}:{acct.uid}:{acct.gid}::{self.mail_root / name}::\n"
            for name, password in self.users.items()
        ]
        _write_passwd_file(self._dir / "users", lines)

    def _argv(self, binary: str) -> list[str]:
        return [binary, "-F", "-c", str(self._dir / "dovecot.conf")]

    def _ports(self) -> list[int]:
        return [p for p in (self.imap_port, self.pop3_port, self.imaps_port, self.pop3s_port) if p]

    def _ready(self) -> bool:
        # "starting up" is logged once all listeners are bound: the ports are ours.
        return log_says(self._dir / "dovecot.log", "starting up") and super()._ready()

    def _render_conf(self, leaf: Leaf | None) -> str:
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
        if leaf is None:
            lines.append("ssl = no")
        else:
            lines += ["ssl = yes", f"ssl_cert = <{leaf.cert}", f"ssl_key = <{leaf.key}"]
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


find_dovecot = DovecotServer.find  # the binary's path, or None when it isn't installed

"""The SMTP proxy's test lab: Exim backends that take mail and AUTH, a static router, the proxy on a thread.

``MailHub`` is servers.smtp's ``EximServer`` configured as a mail platform: it accepts RCPT for the
addresses it hosts (anyone may send to them, as on port 25), lets users AUTH (PLAIN and/or LOGIN,
plain or inside STARTTLS) and relay anywhere once authenticated (as on 587), and delivers every
message into a Maildir per recipient under its root, which the tests count. The shared fixture's
defaults (a hub that refuses every RCPT) stay as they are.

``StaticRouter`` is a real ``Router`` for these tests only (a map, with each backend's login suffix
and substitutions). ``ProxyThread`` runs ``start_smtp_listeners`` on an event loop of its own, so the
tests can use the blocking ``smtplib`` against it. ``python tests/proxy_smtp_lab.py CONFIG.json``
runs the proxy alone in a process, for the kill -9 test.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from servers.process import HOST, free_ports
from servers.smtp import EximServer, _exim_account
from servers.tlsca import Leaf

from runners.plan.proxy_smtp_options import ProxySmtpSettings
from runners.proxy.contracts import (
    BackendEndpoint,
    DecidedBy,
    Listener,
    LoginEvent,
    Password,
    ProxyBackend,
    Route,
    Service,
    TlsMode,
)
from runners.proxy.smtp_listeners import SmtpListeners, start_smtp_listeners
from runners.proxy.spool import Outcome as SpoolOutcome
from runners.proxy.spool import Spool

T = TypeVar("T")


class MailHub(EximServer):
    """An Exim that hosts ``mailboxes`` (addresses) and lets ``users`` (login → password) submit."""

    def __init__(
        self,
        *,
        mailboxes: Sequence[str],
        users: Mapping[str, str],
        mechanisms: Sequence[str] = ("PLAIN", "LOGIN"),
        tls: Leaf | None = None,
        hostname: str = "hub.cutover.test",
        size_limit: str = "10M",
    ) -> None:
        super().__init__(tls=tls, size_limit=size_limit, hostname=hostname)
        self.mailboxes = [m.lower() for m in mailboxes]
        self.users = dict(users)
        self.mechanisms = tuple(mechanisms)

    def maildir(self, address: str) -> Path:
        return self._dir / "mail" / address.lower()

    def messages(self, address: str) -> list[bytes]:
        """What was delivered to ``address`` (Maildir ``new/``), oldest first.

        Addresses the hub doesn't host (mail submitted to the world) share one Maildir, ``_other``;
        their messages are told apart by the ``Envelope-to`` header Exim adds.
        """
        address = address.lower()
        hosted = address in self.mailboxes
        new = self.maildir(address if hosted else "_other") / "new"
        if not new.is_dir():
            return []
        found = [p.read_bytes() for p in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)]
        return found if hosted else [m for m in found if f"Envelope-to: {address}\n".encode() in m]

    def _prepare(self, binary: str) -> None:
        super()._prepare(binary)
        account = _exim_account()
        root = self._dir
        mail = root / "mail"
        mail.mkdir(mode=0o750)
        os.chown(mail, account.pw_uid, account.pw_gid)
        (root / "mailboxes").write_text("".join(f"{m}: {mail / m}\n" for m in self.mailboxes))
        (root / "passwd").write_text("".join(f"{u}: {p}\n" for u, p in self.users.items()))
        for name in ("mailboxes", "passwd"):
            (root / name).chmod(0o644)  # throwaway test passwords, read by the exim user
        (root / "exim.conf").write_text(self._render_conf(account))

    def _render_conf(self, account: pwd.struct_passwd) -> str:
        base = super()._render_conf(account)
        head = base.split("acl_smtp_rcpt =")[0]
        root = self._dir
        other = root / "mail" / "_other"
        authenticators = []
        if "PLAIN" in self.mechanisms:
            authenticators.append(f"""plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if and {{{{!eq{{$auth2}}{{}}}}{{eq{{$auth3}}{{${{lookup{{$auth2}}lsearch{{{root}/passwd}}{{$value}}{{}}}}}}}}}}}}
  server_set_id = $auth2
""")
        if "LOGIN" in self.mechanisms:
            authenticators.append(f"""login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${{if and {{{{!eq{{$auth1}}{{}}}}{{eq{{$auth2}}{{${{lookup{{$auth1}}lsearch{{{root}/passwd}}{{$value}}{{}}}}}}}}}}}}
  server_set_id = $auth1
""")
        return f"""{head}auth_advertise_hosts = *
acl_smtp_rcpt = acl_check_rcpt
queue_only = false
received_header_text = Received: by {self.hostname} id $message_exim_id

begin acl

acl_check_rcpt:
  accept authenticated = *
  accept condition = ${{lookup{{${{lc:$local_part@$domain}}}}lsearch{{{root}/mailboxes}}{{yes}}{{no}}}}
  deny message = 5.1.1 no such user here

begin routers

store:
  driver = accept
  transport = maildir_store

begin transports

maildir_store:
  driver = appendfile
  directory = ${{lookup{{${{lc:$local_part@$domain}}}}lsearch{{{root}/mailboxes}}{{$value}}{{{other}}}}}
  maildir_format
  create_directory
  user = {account.pw_name}
  envelope_to_add
  return_path_add

begin authenticators

{"".join(authenticators)}"""


@dataclass
class StaticRouter:
    """A ``Router`` from two maps (login → backend, address → backend), with each backend's rewriting."""

    backends: Mapping[str, ProxyBackend]
    users: Mapping[str, str] = field(default_factory=dict)
    recipients: Mapping[str, str] = field(default_factory=dict)
    default: str = "legacy"

    async def route_user(self, login: str) -> Route:
        name = self.users.get(login, self.default)
        backend = self.backends[name]
        rewritten = login
        for old, new in backend.substitutions:
            rewritten = rewritten.replace(old, new)
        if "@" not in rewritten and backend.login_suffix:
            rewritten += backend.login_suffix
        return Route(login, name, rewritten, DecidedBy.STATIC, "test map")

    async def route_recipient(self, address: str) -> Route | None:
        name = self.recipients.get(address.lower())
        if name is None:
            return None
        return Route(address, name, address, DecidedBy.STATIC, "test map")


@dataclass
class RecordingObserver:
    """Keeps every login event and whether a password came with it."""

    events: list[tuple[LoginEvent, Password | None]] = field(default_factory=list)

    async def login_finished(self, event: LoginEvent, password: Password | None) -> None:
        self.events.append((event, password))


def smtp_backend(name: str, hub_port: int, *, tls: TlsMode, ca_file: str | None = None,
                 login_suffix: str = "") -> ProxyBackend:  # fmt: skip
    endpoint = BackendEndpoint(HOST, hub_port, tls, ca_file=ca_file)
    return ProxyBackend(
        name, {Service.SUBMISSION: endpoint, Service.SMTP: endpoint}, login_suffix=login_suffix
    )


def client_tls(leaf: Leaf) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    return context


class ProxyThread:
    """``start_smtp_listeners`` on an event loop in a thread of its own; ``stop()`` closes everything."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.started: SmtpListeners | None = None
        self.ports: dict[str, int] = {}

    def start(self, *, router: StaticRouter, backends: Mapping[str, ProxyBackend], settings: ProxySmtpSettings,
              tls: ssl.SSLContext | None, observers: Sequence[RecordingObserver] = ()) -> ProxyThread:  # fmt: skip
        submission, submissions, smtp = free_ports(3)
        self.ports = {"submission": submission, "submissions": submissions, "smtp": smtp}
        listeners = [
            Listener(Service.SUBMISSION, HOST, submission, TlsMode.STARTTLS),
            Listener(Service.SMTP, HOST, smtp, TlsMode.STARTTLS),
        ]
        if tls is not None:  # implicit TLS needs a certificate
            listeners.append(Listener(Service.SUBMISSION, HOST, submissions, TlsMode.IMPLICIT))
        self.started = self.run(start_smtp_listeners(router, backends, listeners, tls, observers, settings))
        return self

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=30)

    def stop(self) -> None:
        if self.started is not None:
            self.run(self.started.close())
        self.run(_cancel_the_rest())  # a relay's copy tasks, say: nothing may be left to die with the loop
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def _cancel_the_rest() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll ``predicate()`` until true or ``timeout``; a deadline for slow machines, never a measurement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# -- the proxy alone in a process: `python tests/proxy_smtp_lab.py CONFIG.json` --


def _main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    backends = {
        name: smtp_backend(name, spec["port"], tls=TlsMode(spec["tls"]), ca_file=spec.get("ca_file"))
        for name, spec in config["backends"].items()
    }
    router = StaticRouter(backends, recipients=config["recipients"])
    settings = ProxySmtpSettings(
        store_and_forward=True, spool_dir=Path(config["spool_dir"]), retry_first_seconds=0.2, retry_backoff=1.0,
        retry_max_seconds=0.2, backend_timeout_seconds=5.0, backend_data_timeout_seconds=30.0,
    )  # fmt: skip
    listeners = [Listener(Service.SMTP, HOST, config["port"], TlsMode.NONE)]
    if config.get("kill_before_record"):
        _kill_before_record(int(config["kill_before_record"]))

    async def serve() -> None:
        started = await start_smtp_listeners(router, backends, listeners, None, (), settings)
        print("ready", flush=True)
        assert started.delivery is not None
        await started.delivery

    asyncio.run(serve())


def _kill_before_record(nth: int) -> None:
    """SIGKILL this process when the ``nth`` delivery record is about to be written: a backend said 250
    for the message and the spool doesn't know yet (the window its docstring admits to)."""
    calls = 0
    write = Spool.record

    def record(self: Spool, spool_id: str, outcome: SpoolOutcome) -> None:
        nonlocal calls
        calls += 1
        if calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        write(self, spool_id, outcome)

    Spool.record = record  # type: ignore[method-assign]


if __name__ == "__main__":
    _main(sys.argv[1])

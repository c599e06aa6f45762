"""The embedded lab: every demo server in this process, on loopback ports chosen free at start.

All servers run on Twisted's reactor in one background thread (started once per process: a
reactor can't be restarted, so stopping a lab closes its ports and connections, not the reactor).
Each server listens on port 0 of a loopback address, so the kernel picks a free port and no two
labs, nor a lab and anything else, can collide. Nothing needs root or an external binary.

=============  ==========================================  ==========================================
service        server                                      what it holds
=============  ==========================================  ==========================================
legacy-imap    ``imap_server`` (twisted.mail.imap4)        the 50 legacy mailboxes, seeded problems
legacy-pop3    ``pop3_server`` (twisted.mail.pop3)         the same INBOXes over POP3
target-imap    ``imap_server``                             the cloud target: 2 MB APPENDLIMIT
smtp-hub       ``smtp_server`` (twisted.mail.smtp)         the target's hub: SIZE 1 MB, no STARTTLS
legacy-ldap    ``ldap_server`` (ldaptor)                   ou=people,dc=acme,dc=example
target-ldap    ``ldap_server`` (ldaptor)                   AD-style OU=Users,DC=corp,...
dns            ``dns_server`` (twisted.names)              zone acme.example, resolver and authority
=============  ==========================================  ==========================================
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

from twisted.internet import defer, error
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.names import dns as twisted_dns
from twisted.protocols.policies import WrappingFactory

from lab import data
from lab.dns_server import LabDNSFactory
from lab.ews import EwsEmulator
from lab.ews.demo import demo_config
from lab.graph import GraphEmulator
from lab.graph.demo import demo_config as graph_demo_config
from lab.imap_server import LabIMAPFactory
from lab.ldap_server import DirectoryFactory, build_tree
from lab.mailstore import MailStore
from lab.platforms import legacy_platform, target_platform
from lab.pop3_server import LabPOP3Factory
from lab.smtp_server import HubFactory

HOST = "127.0.0.1"
T = TypeVar("T")


class LabError(RuntimeError):
    """The lab could not start (the demo command turns it into its one-line error, exit 2)."""


_reactor_lock = threading.Lock()
_reactor_thread: threading.Thread | None = None


def _installed_reactor() -> Any:
    """Twisted's global reactor (its declared type is a union of zope interfaces mypy can't use)."""
    from twisted.internet import reactor

    return reactor


def _reactor() -> Any:
    """Twisted's reactor, running in its background thread (started on first use)."""
    global _reactor_thread
    reactor = _installed_reactor()
    with _reactor_lock:
        if _reactor_thread is None and not reactor.running:
            started = threading.Event()
            reactor.callWhenRunning(started.set)
            _reactor_thread = threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="demo-lab-reactor",
                daemon=True,
            )
            _reactor_thread.start()
            if not started.wait(10):
                raise RuntimeError("the lab's reactor did not start")
            atexit.register(_stop_reactor)
    return reactor


def _stop_reactor() -> None:
    reactor = _installed_reactor()
    if _reactor_thread is not None and reactor.running:
        reactor.callFromThread(reactor.stop)
        _reactor_thread.join(5)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    scheme: str
    port: int
    note: str
    host: str = HOST

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"


class Lab:
    """``with Lab() as lab:`` starts every server; ``lab.services[name]`` says where each listens."""

    def __init__(self, content: data.LabData | None = None, host: str = HOST) -> None:
        self.data = content or data.build()
        self.host = host
        self.legacy: MailStore = legacy_platform(self.data)
        self.target: MailStore = target_platform(self.data)
        self.services: dict[str, Service] = {}
        #: What the servers logged as errors (a server bug shows here, not as a silent hang).
        self.errors: list[str] = []
        self._ports: list[Any] = []  # IListeningPort
        #: ``cutover demo --target ews``: the EWS emulator standing in for Exchange (``start_ews``).
        self.ews: EwsEmulator | None = None
        #: ``cutover demo --target graph``: the Graph emulator standing in for Microsoft 365.
        self.graph: GraphEmulator | None = None
        self._wrappers: list[WrappingFactory] = []

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Lab:
        globalLogPublisher.addObserver(cast(ILogObserver, self._observe))
        try:
            self.call(self._listen_all)
        except Exception as exc:
            self.stop()
            raise LabError(f"the demo lab could not start: {exc}") from exc
        return self

    def start_ews(self) -> EwsEmulator:
        """Exchange for the demo's target (``cutover demo --target ews``): ``lab.ews.demo``."""
        self.ews = EwsEmulator(demo_config(self.data), host=self.host).start()
        return self.ews

    def start_graph(self) -> GraphEmulator:
        """Microsoft 365 for the demo's target (``cutover demo --target graph``): ``lab.graph.demo``."""
        self.graph = GraphEmulator(graph_demo_config(self.data), host=self.host).start()
        return self.graph

    def stop(self) -> None:
        """Close every port and connection of this lab (the reactor stays up for the next one)."""
        if self.ews is not None:
            self.ews.stop()
            self.ews = None
        if self.graph is not None:
            self.graph.stop()
            self.graph = None
        if self._ports or self._wrappers:
            self.call(self._close_all)
        globalLogPublisher.removeObserver(cast(ILogObserver, self._observe))  # a no-op the second time

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` in the reactor thread and wait for its result (the stores live there)."""
        result: T = blockingCallFromThread(_reactor(), func, *args)
        return result

    # -- in the reactor thread -----------------------------------------------------------------

    def _listen_all(self) -> None:
        mailboxes = len(self.data.mailboxes)
        messages = sum(len(m.messages) for m in self.data.mailboxes)
        tcp = (
            (
                "legacy-imap",
                "imap",
                LabIMAPFactory(self.legacy),
                f"{mailboxes} mailboxes, {messages} messages",
            ),
            ("legacy-pop3", "pop3", LabPOP3Factory(self.legacy), "the same INBOXes"),
            ("target-imap", "imap", LabIMAPFactory(self.target), f"APPENDLIMIT={data.TARGET_LIMIT}"),
            (
                "smtp-hub",
                "smtp",
                HubFactory(self.target, data.HUB_HOST, data.HUB_SIZE),
                f"SIZE {data.HUB_SIZE}",
            ),
            (
                "legacy-ldap",
                "ldap",
                DirectoryFactory(_legacy_tree(self.data)),
                f"{data.LEGACY_PEOPLE}, {len(self.data.legacy_directory)} entries",
            ),
            (
                "target-ldap",
                "ldap",
                DirectoryFactory(_target_tree(self.data)),
                f"{data.TARGET_USERS}, {len(self.data.target_directory)} entries",
            ),
        )
        reactor = _installed_reactor()
        for name, scheme, factory, note in tcp:
            wrapper = WrappingFactory(factory)
            self._wrappers.append(wrapper)
            port = reactor.listenTCP(0, wrapper, interface=self.host)
            self._ports.append(port)
            self.services[name] = Service(name, scheme, port.getHost().port, note, self.host)
        dns_port = self._listen_dns(LabDNSFactory([self.data.zone]))
        self.services["dns"] = Service("dns", "dns", dns_port, f"zone {self.data.zone.origin}", self.host)

    def _listen_dns(self, factory: LabDNSFactory) -> int:
        """UDP and TCP on one port: UDP takes a free port, TCP follows (a few tries if it's taken)."""
        reactor = _installed_reactor()
        for _ in range(10):
            udp = reactor.listenUDP(
                0, twisted_dns.DNSDatagramProtocol(controller=factory), interface=self.host
            )
            port = int(udp.getHost().port)
            wrapper = WrappingFactory(factory)
            try:
                tcp = reactor.listenTCP(port, wrapper, interface=self.host)
            except error.CannotListenError:
                udp.stopListening()
                continue
            self._ports += [udp, tcp]
            self._wrappers.append(wrapper)
            return port
        raise RuntimeError("no loopback port free for both UDP and TCP")

    def _close_all(self) -> defer.Deferred[Any]:
        for wrapper in self._wrappers:
            for connection in list(wrapper.protocols):
                connection.transport.loseConnection()
        stopping = [defer.maybeDeferred(port.stopListening) for port in self._ports]
        self._ports, self._wrappers = [], []
        return defer.DeferredList(stopping)

    def _observe(self, event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("log_level") in (
            LogLevel.error,
            LogLevel.critical,
        ):
            failure = event.get("log_failure")
            text = formatEvent(event)
            self.errors.append(f"{text}\n{failure.getTraceback()}" if failure is not None else text)


def _legacy_tree(content: data.LabData) -> Any:
    root = {"objectClass": ["dcObject", "organization"], "dc": ["acme"], "o": ["Acme Corporation"]}
    return build_tree(data.LEGACY_BASE, root, content.legacy_directory)


def _target_tree(content: data.LabData) -> Any:
    root = {"objectClass": ["domain"], "dc": ["corp"]}
    return build_tree(data.TARGET_BASE, root, content.target_directory)

"""The proxy's SMTP figures (issue #14): submission login through the proxy, and the spool's fsync.

Starts a private Exim (tests/proxy_smtp_lab.py ``MailHub``, AUTH PLAIN on loopback) and the proxy's
SMTP listeners on a thread of this process, then measures:

* submission login: connect, banner, EHLO, AUTH PLAIN (235), direct to Exim and through the
  proxy (plain on loopback, which the proxy allows by default: the TLS cost is the same either way);
* spool: ``Spool.begin`` + write + ``commit`` (fsync of the file, rename, fsync of the directory)
  per message, in ``--spool-dir`` (default: a temp dir under /var/tmp, a disk; /tmp may be tmpfs);
* a port-25 message accepted into the spool through the proxy (MAIL, RCPT, DATA, 250 after fsync).

    .venv/bin/python bench/proxy_smtp_bench.py [--logins 300] [--messages 300] [--size 10240]

A script, not a test: nothing in CI runs it. Needs Exim and root, as the test suite does.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.extend([str(REPO), str(REPO / "tests")])

from proxy_smtp_lab import MailHub, ProxyThread, StaticRouter, smtp_backend  # noqa: E402

from runners.plan.proxy_smtp_options import ProxySmtpSettings  # noqa: E402
from runners.proxy.contracts import TlsMode  # noqa: E402
from runners.proxy.spool import Recipient, Spool  # noqa: E402

USER, PASSWORD = "bench@target.test", "bench-Secret-1"


def _login(port: int) -> float:
    """Connect to 235. QUIT is left out: Exim lingers ~200 ms before answering it, which hides everything."""
    start = time.perf_counter()
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    client.ehlo("bench.test")
    code, _ = client.docmd("AUTH", "PLAIN " + _plain())
    elapsed = time.perf_counter() - start
    assert code == 235, code
    client.close()
    return elapsed


def _plain() -> str:
    return base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()


def _percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"p50 {statistics.median(ms):.2f} ms  p95 {p95:.2f} ms  (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=300)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--size", type=int, default=10240, help="message size in bytes")
    parser.add_argument("--spool-dir", type=Path, default=None)
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), cores: {os.cpu_count()}")
    hub = MailHub(mailboxes=["rcpt@target.test"], users={USER: PASSWORD}, hostname="bench.cutover.test")
    hub.start()
    spool_root = Path(tempfile.mkdtemp(prefix="spoolbench", dir=args.spool_dir or "/var/tmp"))
    proxy = ProxyThread()
    try:
        backends = {"target": smtp_backend("target", hub.port, tls=TlsMode.NONE)}
        router = StaticRouter(backends, recipients={"rcpt@target.test": "target"}, default="target")
        settings = ProxySmtpSettings(store_and_forward=True, spool_dir=spool_root / "proxy",
                                     backend_timeout_seconds=10.0)  # fmt: skip
        proxy.start(router=router, backends=backends, settings=settings, tls=None)
        for _ in range(10):  # warm both paths (Exim's first fork, the proxy's imports)
            _login(hub.port)
            _login(proxy.ports["submission"])
        direct, proxied = [], []
        for _ in range(args.logins):  # interleaved: both see the same load
            direct.append(_login(hub.port))
            proxied.append(_login(proxy.ports["submission"]))
        print(f"submission login direct:   {_percentiles(direct)}")
        print(f"submission login proxied:  {_percentiles(proxied)}")
        print(f"  overhead p50: {(statistics.median(proxied) - statistics.median(direct)) * 1000:+.2f} ms")

        body = b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * (args.size // 80)
        spool = Spool(spool_root / "direct")
        commits = []
        for _ in range(args.messages):
            start = time.perf_counter()
            draft = spool.begin("s@bench.test", "", [Recipient("rcpt@target.test", "target")])
            draft.write(body)
            draft.commit()
            commits.append(time.perf_counter() - start)
        print(f"spool write+fsync ({args.size} B, {spool_root}): {_percentiles(commits)}")

        # Mixed in a (nonexistent) second backend would spool too; one down backend does it here.
        down = {"target": smtp_backend("target", 9, tls=TlsMode.NONE)}
        settings2 = ProxySmtpSettings(store_and_forward=True, spool_dir=spool_root / "inbound",
                                      retry_first_seconds=3600, retry_max_seconds=3600)  # fmt: skip
        inbound = ProxyThread().start(router=StaticRouter(down, recipients={"rcpt@target.test": "target"}),
                                      backends=down, settings=settings2, tls=None)  # fmt: skip
        try:
            accepted = []
            with smtplib.SMTP("127.0.0.1", inbound.ports["smtp"], timeout=30) as client:
                for _ in range(args.messages):
                    start = time.perf_counter()
                    client.sendmail("s@bench.test", ["rcpt@target.test"], body)
                    accepted.append(time.perf_counter() - start)
            print(f"port 25 message spooled through the proxy (MAIL..250): {_percentiles(accepted)}")
        finally:
            inbound.stop()
        print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")
    finally:
        proxy.stop()
        hub.stop()
        shutil.rmtree(spool_root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What the proxy's store side costs a login: the journal and the credential capture observers on the
event loop (per login, in microseconds), and the store writer's transactions behind them.

    .venv/bin/python bench/proxy_store_bench.py [--logins 20000] [--users 2000]

It feeds LoginEvents straight to the observers (no sockets: the proxy's own benchmark measures whole
logins), then waits for the writer to commit everything, and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runners.connectors.captured import Keyring
from runners.plan.proxy_capture_options import CaptureSettings
from runners.plan.secret import Secret
from runners.proxy.capture import CaptureObserver
from runners.proxy.contracts import DecidedBy, LoginEvent, Outcome, Password, Route, Service
from runners.proxy.journal import JournalObserver
from runners.proxy.store_writer import StoreWriter


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=20000)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        writer = StoreWriter(Path(tmp) / "state.db")
        writer.start()
        os.environ["BENCH_CAPTURE_KEY"] = base64.b64encode(os.urandom(32)).decode()
        keyring = Keyring(CaptureSettings(enabled=True, key=Secret("env:BENCH_CAPTURE_KEY")))
        observers = [JournalObserver(writer), CaptureObserver(writer, keyring)]
        events = [
            LoginEvent(
                Service.IMAP,
                "127.0.0.1",
                f"user{i % args.users}",
                Route(f"user{i % args.users}", "legacy", f"user{i % args.users}", DecidedBy.STORE),
                Outcome.ACCEPTED,
                "OK",
            )
            for i in range(args.logins)
        ]
        password = Password("a-password-of-some-length")

        async def feed() -> float:
            cpu = time.process_time()
            for event in events:
                for observer in observers:
                    await observer.login_finished(event, password)
            return time.process_time() - cpu

        start = time.perf_counter()
        on_loop = asyncio.run(feed())
        fed = time.perf_counter() - start
        writer.flush()
        committed = time.perf_counter() - start
        writer.close()
    print(f"logins {args.logins:,} ({args.users:,} users, first login of each captured)")
    print(f"on the event loop: {on_loop / args.logins * 1e6:.1f} µs CPU per login (journal + capture), "
          f"fed in {fed:.2f} s")  # fmt: skip
    print(
        f"store writer: {writer.batches} transaction(s), everything committed {committed:.2f} s after the first login"
    )


if __name__ == "__main__":
    main()

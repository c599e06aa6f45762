"""``cutover proxy``: the routing proxy in the foreground (``run``), the route of one user (``route``),
and forgetting a user's captured password (``forget``, the credential capture's part).

``run`` serves in ``[proxy] workers`` processes (``runners.proxy.workers``): one by default, 0 one per CPU.

Exit codes: ``run`` 0 when stopped (SIGINT or SIGTERM), 2 when it can't start (no ``[proxy]``, a
port taken); ``route`` 0 when the store, the directory or a static override decides the user, 1 when
only the default backend does (the plan and the directory don't know them); 2: could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

from cockpit.commands.preflight import warn_before_connecting
from cockpit.commands.proxy_forget import forget_command
from cockpit.commands.proxy_rekey import rekey_command
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.proxy.contracts import DecidedBy, Route
from runners.proxy.server import Bound, build_context, run_proxy
from runners.proxy.spool import SpoolLocked
from runners.proxy.store_side import StoreSide
from runners.proxy.workers import (
    Worker,
    bind_listeners,
    bound_addresses,
    close_all,
    serve_workers,
    worker_count,
)
from runners.safe_text import safe, safe_lines, scrub
from runners.state.open_store import open_store, store_exists

EXIT_OK, EXIT_DEFAULT_ONLY, EXIT_UNUSABLE = 0, 1, 2


def proxy_command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    if plan.proxy is None:
        print("cutover: error: the plan has no [proxy] section", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.action in ("route", "forget") and not args.user:
        print(f"cutover: error: cutover proxy {args.action} needs a USER", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.action == "run" and args.user:
        print("cutover: error: cutover proxy run takes no USER", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.action == "route":
        return _route(plan, args.user, args.output)
    if args.action == "forget":
        return forget_command(args)
    if args.action == "rekey":
        return rekey_command(args)
    warn_before_connecting(plan)
    workers = worker_count(plan.proxy)
    if workers > 1:
        return _run_workers(plan, workers)
    return _serve(plan, None)


def _serve(plan: Plan, worker: Worker | None) -> int:
    # Start-up's ~40,000 tracked objects (modules, the plan) live as long as the proxy: frozen, the
    # collector's full passes that the sessions' garbage triggers skip them (12-35 ms a pass under
    # the bench's load, 5-6 ms frozen: gc.callbacks).
    gc.freeze()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_run(plan, worker))


def _run_workers(plan: Plan, workers: int) -> int:
    """Bind every listener here, then serve them in ``workers`` processes until SIGTERM or SIGINT."""
    assert plan.proxy is not None
    try:
        per_worker = bind_listeners(plan.proxy, workers)
    except OSError as exc:
        print(f"cutover: error: the proxy can't listen: {safe(exc)}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        _say_listening(plan, bound_addresses(per_worker[0]))
        return serve_workers(plan.proxy, per_worker, lambda worker: _serve(plan, worker))
    finally:
        close_all(per_worker)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed: about a fifth less CPU per proxied session than
    asyncio's (bench/proxy_bench.py, "ours" beside "ours-uvloop"); asyncio's loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run(plan: Plan, worker: Worker | None = None) -> int:
    """The proxy in this process: all of it, or one ``worker`` of several (on its parent's sockets)."""
    store = open_store(plan)
    side = StoreSide.for_plan(plan)  # the login journal, the credential capture, the on-login queue
    await side.start(reseal=worker is None or worker.index == 0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_proxy(
            plan,
            store,
            stop,
            observers=side.observers,
            on_context=lambda ctx: side.publish(ctx.registry.counts),  # live session counts into the store
            on_bound=(lambda bound: _say_listening(plan, bound)) if worker is None else None,
            prebound=None if worker is None else worker.prebound,
            limits=None if worker is None else worker.limits,
        )
    except OSError as exc:
        print(f"cutover: error: the proxy can't listen: {safe(exc)}", file=sys.stderr)
        return EXIT_UNUSABLE
    except SpoolLocked as exc:
        print(f"cutover: error: {safe(exc)}", file=sys.stderr)
        return EXIT_UNUSABLE
    finally:
        await side.aclose()
        store.close()
    return EXIT_OK


def _say_listening(plan: Plan, bound: list[Bound]) -> None:
    if plan.proxy is not None and not plan.proxy.certificates:
        exposed = sorted({b.host for b in bound if not ipaddress.ip_address(b.host).is_loopback})
        if exposed:
            print(f"cutover: warning: no [[proxy.certificates]]: passwords cross {', '.join(exposed)} in clear",
                  file=sys.stderr)  # fmt: skip
    for b in bound:
        print(f"cutover proxy: {b.listener.service} ({b.listener.tls}) on {b.host}:{b.port}")
    sys.stdout.flush()


def _route(plan: Plan, user: str, output: str) -> int:
    store = open_store(plan, read_only=True) if store_exists(plan) else None
    ctx = build_context(plan, store)

    async def decide() -> Route:
        try:
            return await ctx.router.route_user(user)
        finally:
            if ctx.router.directory is not None:
                ctx.router.directory.close()

    route = asyncio.run(decide())
    data = route_json(route, ctx.router.rewritten_logins(user))
    if output == "json":
        print(scrub(json.dumps(data, indent=2, sort_keys=True)))
    else:
        lines = [
            f"{route.user}: {route.backend} (decided by {route.decided_by}: {route.reason})",
            f"login given to {route.backend}: {route.backend_login}",
            *(f"  as {name} would see it: {login}" for name, login in data["logins"].items()),
        ]
        print(safe_lines("\n".join(lines)))
    return EXIT_DEFAULT_ONLY if route.decided_by == DecidedBy.DEFAULT else EXIT_OK


def route_json(route: Route, logins: dict[str, str]) -> dict[str, Any]:
    """A route as JSON (``cutover proxy route --output json``, and the views)."""
    return {
        "user": route.user,
        "backend": route.backend,
        "backend_login": route.backend_login,
        "decided_by": str(route.decided_by),
        "reason": route.reason,
        "logins": logins,
    }

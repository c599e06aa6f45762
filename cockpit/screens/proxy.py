"""The routing proxy, as the store sees it (``p``, ``:proxy``): sessions open now per backend and
service, logins per second over the last minute with their outcomes, the latest failures in the
backend's words, the mailboxes of on-login waves queued by logins, and the route of any user.

The figures are ``cutover status``'s (``runners.state.read_models.proxy``), re-read every few seconds
while the view is shown. A user's route is the decision the journal recorded at their last routed
login (backend, the login rewritten for it, which source of truth decided, why), with their last
logins; with a ``[proxy]`` in the plan, the router is asked too (in a worker: it may ask the
directory), for the route now and the login each backend would be given. The view only reads: a
read-only cockpit shows all of it.
"""

from __future__ import annotations

import time
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Header, Input, Static

from checks.proxy_logins import last_route, live_route, proxy_logins, route_words
from checks.triage import Triage, find_entry
from cockpit.format import block
from cockpit.screens.base import View
from cockpit.triage_text import proxy_text
from cockpit.widgets.keybar import KeyBar
from runners.errors import MigrationError
from runners.state.read_models.proxy import failure_text, proxy_data, sessions_text
from runners.state.read_models.snapshot import Snapshot

#: Seconds between two reads of the proxy's figures while the view is shown.
REREAD = 2.0
FAILURES_SHOWN = 10


def figures_text(data: dict[str, Any]) -> str:
    """The view's figures in words (the same as ``status``'s proxy lines, laid out for a screen)."""
    outcomes = data["outcomes_last_minute"]
    split = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())) or "none"
    lines = [
        f"SESSIONS OPEN NOW   {sessions_text(data['sessions'])}",
        f"LOGINS              {data['logins_per_second']:.2f}/s over the last minute ({split})",
    ]
    per_backend: dict[str, list[str]] = {}
    for c in data["by_backend_last_minute"]:
        per_backend.setdefault(c["backend"] or "(not routed)", []).append(
            f"{c['service']} {c['outcome']} {c['count']}"
        )
    for backend, parts in per_backend.items():
        lines.append(f"  {backend:<17} {', '.join(parts)}")
    for wave, q in data["queued_by_login"].items():
        lines.append(f"QUEUED BY LOGINS    wave {wave}: {q['queued']} of {q['mailboxes']} mailboxes")
    lines += ["", f"RECENT FAILURES ({len(data['failures'])}), in the backend's words"]
    lines += [f"  {failure_text(f)}" for f in data["failures"]] or ["  none in the last hour"]
    return "\n".join(lines)


class ProxyView(View):
    crumb = "proxy"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("down", "scroll(1)", "Scroll", show=False),
        Binding("up", "scroll(-1)", "Scroll up", show=False),
    ]

    def __init__(self, user: str = "") -> None:
        super().__init__()
        self.user = user
        self._read_at: float | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="a user (login or address): Enter shows their route and last logins", id="route-user"
        )
        with VerticalScroll(id="proxy-scroll"):
            yield Static("", id="proxy-figures", markup=False)
            yield Static("", id="proxy-route", markup=False)
            yield Static("", id="proxy-live", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#route-user", Input).focus()
        self.reread()
        self._ask()

    def show(self, snapshot: Snapshot) -> None:
        if self._read_at is None or time.monotonic() - self._read_at >= REREAD:
            self.reread()

    def reread(self) -> None:
        self._read_at = time.monotonic()
        data = proxy_data(self.cockpit.store, self.cockpit.plan, failures=FAILURES_SHOWN)
        self.query_one("#proxy-figures", Static).update(block(figures_text(data)))
        self._show_route()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.user = event.value.strip()
        event.input.value = ""
        self._show_route()
        self._ask()

    def _ask(self) -> None:
        """Ask the router once per user asked for (the journal's part is re-read with the figures)."""
        live = self.query_one("#proxy-live", Static)
        live.update("")
        if self.user and self.cockpit.plan.proxy is not None:
            live.update("\nasking the router…")
            self._ask_router(self.user)

    def _show_route(self) -> None:
        box = self.query_one("#proxy-route", Static)
        if not self.user:
            box.update("")
            return
        entry = find_entry(self.cockpit.plan, self.user)
        names = {self.user} | ({entry.source, entry.target, entry.address or ""} if entry else set())
        found = Triage(self.user, entry)
        found.proxy_logins = proxy_logins(self.cockpit.store, names)
        found.proxy_route = last_route(found.proxy_logins)
        mailbox = f"mailbox {entry.source}, wave {entry.wave}" if entry else "not a mailbox of the plan"
        box.update(block("\n".join(["", f"USER {self.user} ({mailbox})", *proxy_text(found)[1:]])))

    @work(thread=True, exclusive=True, group="proxy-route")
    def _ask_router(self, user: str) -> None:
        try:
            found = live_route(self.cockpit.plan, self.cockpit.store, user)
        except (MigrationError, OSError) as exc:
            text = f"ROUTE NOW: the router could not say: {exc}"
        else:
            logins = ", ".join(f"{backend} {login}" for backend, login in found.logins.items())
            text = f"ROUTE NOW           {route_words(found.route)}\nLOGIN PER BACKEND   {logins}"
        self.app.call_from_thread(self._show_live, user, text)

    def _show_live(self, user: str, text: str) -> None:
        if user == self.user:  # not an answer about someone asked before
            self.query_one("#proxy-live", Static).update(block("\n" + text))

    def action_scroll(self, lines: int) -> None:
        self.query_one("#proxy-scroll", VerticalScroll).scroll_relative(y=lines, animate=False)

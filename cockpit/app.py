"""The cockpit: a view over the state store. It never runs a migration itself: launching starts a
detached runner (``cutover run --detach``), and pause/resume/cancel go through the store, so closing
the cockpit or losing the SSH session never stops a migration, and several cockpits can watch one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path

from textual.actions import ActionParseResult
from textual.app import App, SystemCommand
from textual.binding import Keymap
from textual.dom import DOMNode
from textual.screen import Screen
from textual.theme import BUILTIN_THEMES
from textual.worker import Worker, WorkerFailed, WorkerState

from cockpit.actions import APP_ACTIONS, WAVE_ACTIONS, ActionSpec, bindings, effective_key, read_only_refusal
from cockpit.before_action import blocker_lines, nothing_to, retry_counts
from cockpit.commands.run import runner_argv
from cockpit.format import MB
from cockpit.messages import SnapshotReady
from cockpit.palette import CockpitCommands
from cockpit.poller import INTERVAL, SnapshotPoller
from cockpit.screens.audit import AuditView
from cockpit.screens.dialogs import CommandBar, Confirm, HelpScreen, Interlock
from cockpit.screens.log import LogView
from cockpit.screens.mailbox import FailureView, MailboxView
from cockpit.screens.mailboxes import MailboxesView
from cockpit.screens.overview import OverviewView
from cockpit.screens.proxy import ProxyView
from cockpit.screens.readiness import ReadinessView
from cockpit.screens.triage import TriageView
from cockpit.shell import Cockpit
from cockpit.widgets.flash import flash
from cockpit.widgets.keybar import own_keys
from cockpit.window_step import ALWAYS_TYPED, ENDED, next_step, plan_step, start_detached, switch_argv
from runners.engine.control import request
from runners.plan.model import Plan
from runners.state.mailbox_views import MailboxQuery, MessageIssue
from runners.state.open_store import open_store
from runners.state.operators import operator_id
from runners.state.read_models.launch_preview import LaunchPreview, preview_launch
from runners.state.read_models.snapshot import Snapshot
from runners.state.store import StateStore

RATE_HISTORY = 120  # samples in the throughput sparkline (a minute at 2 Hz)
#: Plans of this many mailboxes or more are frozen out of the garbage collector's sight (``apply``).
FREEZE_FROM = 10_000

#: ``--ansi``: Textual's theme made of the terminal's own 16 colours (right on any palette, over SSH).
ANSI_THEME = "ansi-dark"
#: NO_COLOR: every colour is dropped, so whatever colour alone showed needs an attribute: the table
#: cursor in reverse video (bold alone is easy to miss), the cursor of an unfocused table underlined.
NO_COLOR_THEME = dataclasses.replace(
    BUILTIN_THEMES[ANSI_THEME],
    name="cutover-no-color",
    variables={
        **BUILTIN_THEMES[ANSI_THEME].variables,
        "block-cursor-text-style": "reverse bold",
        "block-cursor-blurred-text-style": "underline",
    },
)


class CockpitApp(App[None]):
    TITLE = "cutover"
    CSS_PATH = "cockpit.tcss"
    BINDINGS = [*bindings(APP_ACTIONS), *bindings(WAVE_ACTIONS)]
    # The registry's actions, the views, then the system commands kept by get_system_commands.
    COMMANDS = {CockpitCommands}

    def __init__(
        self,
        plan: Plan,
        *,
        read_only: bool = False,
        poll: bool = True,
        keys: Keymap | None = None,
        ansi: bool = False,
    ) -> None:
        # Textual turns NO_COLOR into greys (still 256-colour or truecolor codes) unless the theme's
        # colours are the terminal's own ANSI ones; then it drops every colour. So NO_COLOR implies ANSI.
        no_color = "NO_COLOR" in os.environ  # Textual's own test: set, whatever the value
        super().__init__(ansi_color=True if ansi or no_color else None)
        if no_color:
            self.register_theme(NO_COLOR_THEME)  # the cursor in reverse video: no colour to show it
            self.theme = NO_COLOR_THEME.name
        elif ansi:
            self.theme = ANSI_THEME  # the terminal's own 16 colours, whatever its palette
        #: The user's keys.toml (action id → keys); the help screen and the palette show these.
        self.keys: dict[str, str] = dict(keys or {})
        if self.keys:
            self.set_keymap(self.keys)
        self.plan = plan
        self.read_only = read_only
        self.snapshot: Snapshot | None = None
        self.snapshot_interval = INTERVAL
        self.rates: deque[float] = deque(maxlen=RATE_HISTORY)  # msg/s
        self.mb_rates: deque[float] = deque(maxlen=RATE_HISTORY)  # MB/s
        self.current_rate = (0.0, 0.0)
        self._poller = (
            SnapshotPoller(
                plan,
                lambda s: self.post_message(SnapshotReady(s)),
                query=self.current_query,
                read_only=read_only,
                failed=lambda error: self.call_from_thread(self.background_failed, None, error),
            )
            if poll
            else None
        )
        self._store: StateStore | None = None
        #: The mailboxes views by wave (None: every wave), kept to be opened again (``open_mailboxes``).
        self._mailboxes_views: dict[str | None, MailboxesView] = {}
        #: The mailbox view, kept to be opened again on another mailbox (``open_mailbox``).
        self._mailbox_view: MailboxView | None = None
        #: ``cutover switch`` processes started from this cockpit, until they end: (what, process, log).
        self._window_steps: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    @property
    def store(self) -> StateStore:
        """The UI thread's connection to the state store, opened once (the poller has its own)."""
        if self._store is None:
            self._store = open_store(self.plan, read_only=self.read_only)
        return self._store

    # -- life cycle ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.read_only:
            self.title = "cutover (read-only)"
        self.push_screen(OverviewView())
        if self._poller is not None:
            self._poller.start()

    def on_unmount(self) -> None:
        if self._poller is not None:
            self._poller.stop()
        if self._store is not None:
            self._store.close()

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.apply(message.snapshot)

    def current_query(self) -> MailboxQuery | None:
        """The mailbox rows the visible view needs (called from the poller thread: reads only). A view
        that shows none has the mailboxes view's first window read (a bounded read): ``m`` then opens
        on rows already here, and its own read follows."""
        screen = self.screen_stack[-1] if self.screen_stack else None
        query = getattr(screen, "query_rows", None)
        return query() if callable(query) else MailboxesView.first_window()

    def poke(self) -> None:
        """Poll now: a view changed what it shows."""
        if self._poller is not None:
            self._poller.poke()

    def poke_rows(self) -> None:
        """Read the visible view's rows now; the whole poll follows at its time."""
        if self._poller is not None:
            self._poller.poke_rows()

    def apply(self, snapshot: Snapshot) -> None:
        """Take a new snapshot: rates from the previous one, then refresh the visible view only."""
        previous, self.snapshot = self.snapshot, snapshot
        if previous is None and len(self.plan.mailboxes) >= FREEZE_FROM:
            # A fleet's plan and what the first poll worked out from it live as long as the app: out of
            # the collector's sight, or every full collection walks them all on this thread (0.8 s at
            # 100,000 mailboxes under load: cockpit_bench.py). Garbage collected first, so that none
            # is kept for good.
            gc.collect()
            gc.freeze()
        if previous is not None and snapshot.taken > previous.taken:  # not a view's rows read early
            seconds = max(snapshot.taken - previous.taken, 1e-3)
            self.snapshot_interval = seconds
            msgs = max(snapshot.messages_done - previous.messages_done, 0) / seconds
            mbs = max(snapshot.bytes_done - previous.bytes_done, 0) / MB / seconds
            self.current_rate = (msgs, mbs)
            self.rates.append(msgs)
            self.mb_rates.append(mbs)
        self._window_steps_ended()
        if not self.screen_stack:  # a snapshot that arrives while the app closes: nothing shows it
            return
        screen = self.screen
        if hasattr(screen, "show") and screen.is_mounted and not self._exit:
            with self.batch_update():
                screen.show(snapshot)

    # -- crashes and background work ----------------------------------------------------------

    def _handle_exception(self, error: Exception) -> None:
        """A background task that failed is reported in its view and the app lives on; anything else
        ends the app with a traceback that never shows local variables (passwords live in them)."""
        if isinstance(error, WorkerFailed):
            self.background_failed(None, error.error)
            return
        super()._handle_exception(error)

    def _fatal_error(self) -> None:
        # Textual's own crash screen renders each frame's locals (show_locals=True): ours never does.
        from rich.segment import Segments
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None)
        self._exit_renderables.append(Segments(self.console.render(traceback, self.console.options)))
        self._close_messages_no_wait()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and not event.worker.exit_on_error:
            self.background_failed(event.worker, event.worker.error)

    def background_failed(self, worker: Worker[object] | None, error: BaseException | None) -> None:
        """One line in the view that started the work (``show_background_error`` when it has one), and
        a notification: the app goes on."""
        reason = one_line_reason(error)
        view = getattr(worker, "node", None) if worker is not None else self.screen
        show = getattr(view, "show_background_error", None)
        if callable(show):
            show(reason)
        self.notify(f"background work failed: {reason}", severity="error")

    # -- navigation ----------------------------------------------------------------------------

    def action_goto(self, view: str) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()
        if view == "mailboxes":
            self.open_mailboxes()
        elif view == "readiness":
            self.push_screen(ReadinessView())
        elif view == "user":
            self.push_screen(TriageView())
        elif view == "log":
            self.push_screen(LogView())
        elif view == "audit":
            self.push_screen(AuditView())
        elif view == "proxy":
            self.push_screen(ProxyView())

    def open_mailboxes(self, wave: str | None = None, filter_text: str | None = None) -> None:
        # One view per wave, kept once closed and opened again as new (``MailboxesView.reopen``):
        # composing the screen was two thirds of what `m` cost the UI thread (cockpit_bench.py).
        view = self._mailboxes_views.get(wave)
        if view is None or view in self.screen_stack:
            view = MailboxesView(wave)
            if wave not in self._mailboxes_views:
                self._mailboxes_views[wave] = view
                self.install_screen(view, f"mailboxes {wave or ''}")
        view.reopen(filter_text)
        self.push_screen(view)

    def open_audit(self, wave: str | None = None, filter_text: str | None = None) -> None:
        view = AuditView(wave)
        if filter_text is not None:
            view.filter = filter_text
        self.push_screen(view)

    def open_mailbox(self, source: str) -> None:
        # One view, kept once closed and opened again on another mailbox (``MailboxView.reopen``).
        view = self._mailbox_view
        if view is None or view in self.screen_stack:
            view = MailboxView(source)
            if self._mailbox_view is None:
                self._mailbox_view = view
                self.install_screen(view, "mailbox")
        view.reopen(source)
        self.push_screen(view)

    def open_failure(self, source: str, issue: MessageIssue) -> None:
        self.push_screen(FailureView(source, issue))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only, self.keys, own_keys(self.screen)))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's palette commands worth keeping: the theme switcher (an ANSI theme over a poor SSH
        terminal; not with NO_COLOR, which would lose the reverse-video cursor) and the screenshot (an SVG
        for a change ticket). Quit and Keys are left out: the registry's quit and "?" help do that."""
        for command in super().get_system_commands(screen):
            if command.title == "Screenshot" or (command.title == "Theme" and not self.no_color):
                yield command

    def key_of(self, spec: ActionSpec) -> str:
        """The key(s) an action is bound to now, keys.toml included (Textual's names, comma-separated)."""
        return effective_key(spec, self.keys)

    def action_command_bar(self) -> None:
        self.push_screen(CommandBar(), self._run_command)

    def _run_command(self, command: str | None) -> None:
        words = (command or "").split()
        if not words:
            return
        view, rest = words[0].lower(), words[1:]
        text = next((w[1:] for w in rest if w.startswith("/")), None)
        wave = next((w for w in rest if not w.startswith("/")), None)
        if view in ("o", "overview"):
            self.action_goto("overview")
        elif view in ("m", "mb", "mailboxes"):
            self.action_goto("overview")
            self.open_mailboxes(wave if wave in self.plan.waves else None, text)
        elif view in ("l", "log"):
            self.action_goto("log")
        elif view in ("a", "audit"):
            self.action_goto("overview")
            self.open_audit(wave if wave in self.plan.waves else None, text)
        elif view in ("r", "readiness", "checks"):
            self.action_goto("readiness")
        elif view in ("u", "user", "triage"):
            self.action_goto("overview")
            self.push_screen(TriageView(rest[0] if rest else ""))
        elif view in ("p", "proxy"):
            self.action_goto("overview")
            self.push_screen(ProxyView(rest[0] if rest else ""))
        elif view in ("h", "help", "?"):
            self.action_help()
        elif view in ("q", "quit"):
            self.exit()
        else:
            self.notify(
                f"unknown view {view!r}: overview, readiness, mailboxes, user, log, audit, proxy, help, quit",
                severity="warning",
            )

    # -- actions that change things ------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Read-only mode hides every action that changes anything (the footer shows none of them)."""
        if self.read_only and read_only_refusal(action) is not None:
            return False
        return True

    async def run_action(
        self,
        action: str | ActionParseResult,
        default_namespace: DOMNode | None = None,
        namespaces: Mapping[str, DOMNode] | None = None,
    ) -> bool:
        """Every key, palette entry and click runs its action here: in read-only mode, one that would
        change anything (in any view) is refused in the flash line, saying why; never run, never silent."""
        name = action if isinstance(action, str) else action[1]
        refusal = read_only_refusal(name) if self.read_only else None
        if refusal is not None:
            flash(self, refusal)
            return True  # handled: the key goes no further
        return await super().run_action(action, default_namespace, namespaces)

    def _refuse_if_read_only(self, action: str = "") -> bool:
        """For a direct call (keys never get here in read-only mode: ``run_action`` refuses first)."""
        if self.read_only:
            flash(self, read_only_refusal(action) or "read-only cockpit: nothing can be changed from here")
            return True
        return False

    def record_action(self, what: str, mailbox: str | None = None) -> None:
        """Keep an operator's action in the state store's events: every cockpit's log shows who and when."""
        self.store.record_operator_action(operator_id(), what, mailbox=mailbox)
        self.poke()

    def _focused_wave(self) -> str | None:
        wave = getattr(self.screen, "wave", None)
        if isinstance(wave, str):
            return wave
        chosen = self.screen.selected_wave() if isinstance(self.screen, OverviewView) else None
        return chosen or (self.plan.waves[0] if self.plan.waves else None)

    def _focused_mailbox(self) -> str | None:
        source = getattr(self.screen, "source", None)
        if isinstance(source, str):
            return source
        return self.screen.selected_source() if isinstance(self.screen, MailboxesView) else None

    def action_launch(self) -> None:
        if self._refuse_if_read_only("launch"):
            return
        wave = self._focused_wave()
        if wave is None:
            return
        entries = self.plan.wave(wave)
        shown = ", ".join(e.source for e in entries[:8]) + (
            f" and {len(entries) - 8} more" if len(entries) > 8 else ""
        )
        preview = preview_launch(self.store, self.plan, wave)
        operations = [
            f"start `cutover run --plan {self.plan.path} --wave {wave} --detach` (runs on after the cockpit closes)",
            f"copy {len(entries)} mailbox(es): {shown}",
            f"from {self.plan.source.address} to {self.plan.target.address}",
            launch_kind(preview),
            *blocker_lines(self.snapshot, self.plan, [e.source for e in entries]),
        ]
        if preview.running:
            runs = ", ".join(f"#{r}" for r in preview.running)
            operations.append(
                f"WARNING: run {runs} of this wave is still running; this runner takes only the mailboxes it does not hold"
            )
        typed = None if self.plan.is_pilot(wave) else wave  # [[waves]] pilot = true, never the name

        def launch(confirmed: bool | None) -> None:
            if confirmed:
                self.launch_wave(wave)

        self.push_screen(Confirm(f"Launch wave {wave}?", operations, typed), launch)

    def action_retry_failed(self) -> None:
        if self._refuse_if_read_only("retry_failed"):
            return
        mailbox = self._focused_mailbox()
        wave = self._wave_of(mailbox) if mailbox else self._focused_wave()
        if wave is None:
            return
        nothing = nothing_to(self.snapshot, "retry", wave, mailbox)
        if nothing:
            flash(self, nothing, error=False)
            return
        scope = f"mailbox {mailbox}" if mailbox else f"wave {wave}"
        command = (
            f"cutover run --wave {wave} --retry-failed{f' --mailbox {mailbox}' if mailbox else ''} --detach"
        )
        operations = [
            f"start `{command}`",
            f"retry only what failed in {scope}: failed and skipped messages, failed folders, failed mailboxes",
            *retry_counts(self.snapshot, wave, mailbox),
            *blocker_lines(
                self.snapshot, self.plan, [mailbox] if mailbox else [e.source for e in self.plan.wave(wave)]
            ),
        ]

        def launch(confirmed: bool | None) -> None:
            if confirmed:
                self.launch_wave(wave, retry_failed=True, mailbox=mailbox)

        self.push_screen(Confirm(f"Retry failed items of {scope}?", operations), launch)

    def _wave_of(self, mailbox: str) -> str | None:
        return next((m.wave for m in self.plan.mailboxes if m.source == mailbox), None)

    def launch_wave(self, wave: str, *, retry_failed: bool = False, mailbox: str | None = None) -> None:
        """Start a detached runner from a worker thread: the view keeps drawing while it starts."""
        argv = runner_argv(
            self.plan.path,
            wave,
            output="json",
            retry_failed=retry_failed,
            mailboxes=[mailbox] if mailbox else [],
            detach=True,
        )
        what = f"wave {wave} {'retry ' if retry_failed else ''}"
        scope = f" (mailbox {mailbox})" if mailbox else ""
        self.record_action(
            f"{'retry of failed items' if retry_failed else 'launch'} of wave {wave}{scope}", mailbox
        )
        self.notify(f"starting {what}in the background…")
        self.run_worker(
            partial(self._start_runner, argv, what), thread=True, group="launch", exit_on_error=False
        )

    def _start_runner(self, argv: list[str], what: str) -> None:
        """In a worker thread: run ``cutover run --detach`` (it returns once the runner is on its own)."""
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            started, said = proc.returncode == 0, proc.stderr.strip() or proc.stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            started, said = False, str(exc)
        with contextlib.suppress(RuntimeError):  # the cockpit closed meanwhile: the runner goes on
            self.call_from_thread(self._launched, what, started, said)

    def _launched(self, what: str, started: bool, said: str) -> None:
        if started:
            self.notify(f"{what}started in the background")
        else:
            self.notify(f"could not start {what.strip()}: {said}", severity="error")
        self.poke()

    def action_switch(self) -> None:
        """The selected wave's next window step, through ``cutover switch`` started detached."""
        if self._refuse_if_read_only("switch"):
            return
        wave = self._focused_wave()
        summary = next((w for w in self.snapshot.waves if w.name == wave), None) if self.snapshot else None
        if wave is None or summary is None or summary.window is None:
            flash(self, "no wave's window stage read yet: try again in a moment", error=False)
            return
        if summary.window.holder:
            flash(self, f"wave {wave}: a step is running now, held by {summary.window.holder}", error=False)
            return
        step = next_step(summary.window.stage)
        if step is None:
            flash(self, f"wave {wave} is {summary.window.label}: no window step follows", error=False)
            return
        planned = plan_step(self.plan, self.store, wave, step)
        lines = [
            f"start `cutover switch --plan {self.plan.path} --wave {wave} --step {step}` in the background "
            "(it runs on after the cockpit closes; its log in the state dir)",
            f"wave {wave} is {summary.window.label}",
            *(str(c) for c in planned.conditions),
        ]
        if step in ALWAYS_TYPED:
            lines.append("the switch moves the wave's users to the target: asked every time")
        if not planned.typed:
            self.push_screen(
                Confirm(f"{step} for wave {wave}?", lines),
                lambda confirmed: self.start_window_step(wave, step, None) if confirmed else None,
            )
            return
        if planned.unmet:
            lines.append(
                f"{len(planned.unmet)} condition(s) don't hold: going on is recorded with your reason"
            )
        self.push_screen(
            Interlock(f"{step} for wave {wave}?", lines, wave),
            lambda reason: self.start_window_step(wave, step, reason) if reason else None,
        )

    def start_window_step(self, wave: str, step: str, reason: str | None) -> None:
        """Start ``cutover switch`` for one step, detached, from a worker thread (the view keeps drawing)."""
        argv = switch_argv(self.plan.path, wave, step, reason=reason)
        self.record_action(f"{step} of wave {wave}" + (f" (reason: {reason})" if reason else ""))
        self.notify(f"starting {step} of wave {wave} in the background…")
        self.run_worker(
            partial(self._start_window_step, wave, step, argv),
            thread=True,
            group="switch",
            exit_on_error=False,
        )

    def _start_window_step(self, wave: str, step: str, argv: list[str]) -> None:
        try:
            child, log = start_detached(self.plan, wave, argv)
        except OSError as exc:
            said = f"could not start {step} of wave {wave}: {exc}"
            with contextlib.suppress(RuntimeError):
                self.call_from_thread(self.notify, said, severity="error")
            return
        with contextlib.suppress(RuntimeError):  # the cockpit closed meanwhile: the step goes on
            self.call_from_thread(self._step_started, f"{step} of wave {wave}", child, log)

    def _step_started(self, what: str, child: subprocess.Popen[bytes], log: Path) -> None:
        self.notify(f"{what} started: pid {child.pid}, log {log}")
        self._window_steps.append((what, child, log))
        self.poke()

    def _window_steps_ended(self) -> None:
        """Say how each step started from here ended (and reap its process), once."""
        for started in list(self._window_steps):
            what, child, log = started
            code = child.poll()
            if code is None:
                continue
            self._window_steps.remove(started)
            words = ENDED.get(code, f"ended with exit code {code} (see its log)")
            self.notify(f"{what}: {words}; log {log}", severity="information" if code == 0 else "error")

    def action_control(self, action: str) -> None:
        if self._refuse_if_read_only(f"control('{action}')"):
            return
        mailbox = self._focused_mailbox()
        wave = None if mailbox else self._focused_wave()
        nothing = nothing_to(self.snapshot, action, wave or self._wave_of(mailbox or ""), mailbox)
        if nothing:
            flash(self, nothing, error=False)
            return
        scope = f"mailbox {mailbox}" if mailbox else f"wave {wave}"
        operations = [
            f"ask the runner to {action} {scope} after its current batch (recorded in the state store)"
        ]

        def send(confirmed: bool | None) -> None:
            if confirmed:
                self.send_control(action, wave=wave, mailbox=mailbox)

        self.push_screen(Confirm(f"{action.capitalize()} {scope}?", operations), send)

    def send_control(self, action: str, *, wave: str | None, mailbox: str | None) -> None:
        request(self.store, action, wave=wave, mailbox=mailbox, requested_by="cockpit")
        self.record_action(f"{action} of {f'mailbox {mailbox}' if mailbox else f'wave {wave}'}", mailbox)
        self.notify(f"{action} requested")
        self.poke()


#: mypy proves here that the app gives its views and palette all they ask of it (``cockpit.shell``).
_SATISFIES_SHELL: type[Cockpit] = CockpitApp


def launch_kind(preview: LaunchPreview) -> str:
    """One line saying whether this is a first (full) pass or a delta pass, and after what."""
    if preview.kind == "full":
        return "a full first pass: nothing of this wave has been copied yet"
    since = ""
    if preview.last_run is not None:
        ended = time.strftime("%Y-%m-%d %H:%M", time.localtime(preview.last_ended or 0))
        since = f" since run #{preview.last_run} ({preview.last_status}, ended {ended})"
    return (
        f"a delta pass: copies only what is new or changed{since}; {preview.messages_copied:,} messages "
        f"({preview.bytes_copied / MB:,.1f} MB) already copied are not copied again"
    )


def one_line_reason(error: BaseException | None) -> str:
    """What went wrong, on one line and short: the error's type and its first line (no locals, no frames)."""
    if error is None:
        return "unknown error"
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_cockpit(plan_path: Path, read_only: bool, *, keys: Keymap | None = None, ansi: bool = False) -> int:
    from runners.plan.loader import load_plan

    app = CockpitApp(load_plan(plan_path), read_only=read_only, keys=keys, ansi=ansi)
    app.run()
    return app.return_code or 0

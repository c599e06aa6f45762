"""The mailboxes view over a fleet larger than its window (issue #13): the table holds ``PAGE`` rows read
by keyset, and the keys still reach every mailbox: scrolling on past the window, End and Home (the same
rows, planned mailboxes the store hasn't seen included), a filter that matches a mailbox far beyond the
first window, a row updated while the view is open, and a mailbox's own view read off the UI thread.

The store is written with the StateStore API, as a runner writes it; the cockpit is driven by Pilot, and
each snapshot is read with the view's own query (``feed``), as the poller would, at the test's pace. The
window reads themselves run on both backends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cockpit_lab import feed
from dovecot_lab import Unreachable, write_plan
from servers.postgres import PASSWORD_ENV
from textual.color import Color
from textual.pilot import Pilot

from cockpit.app import CockpitApp
from cockpit.screens.mailbox import MailboxView
from cockpit.screens.mailboxes import NOT_OK, PAGE, MailboxesView
from cockpit.widgets.fleet_table import FleetTable
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state import mailbox_search
from runners.state.mailbox_views import MailboxDetail, MailboxQuery
from runners.state.open_store import open_store
from runners.state.read_models.snapshot import Snapshot, take
from runners.state.statuses import MailboxState
from runners.state.store import MailboxProgress, StateStore

#: Two and a half windows.
FLEET = PAGE * 5 // 2


def fleet_plan(root: Path, state: str = "") -> Plan:
    mailboxes = tuple((f"u{i:04d}", f"u{i:04d}", "pilot" if i % 2 else "later") for i in range(FLEET))
    side = Unreachable(10143)
    return load_plan(write_plan(root, side, side, mailboxes=mailboxes, tail=state))


def backend_plan(root: Path, backend: str, request: pytest.FixtureRequest) -> Plan:
    """``fleet_plan`` with its store on ``backend`` (PostgreSQL: the test server's, by ``pg_url``)."""
    state = ""
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        state = f'[state]\nurl = "{url}"\npassword = "env:{PASSWORD_ENV}"\n'
    return fleet_plan(root, state)


def seed(store: StateStore) -> dict[str, int]:
    """Every mailbox in the store; every third one has failures (so "failed" order differs)."""
    ids = dict(
        zip(
            (f"u{i:04d}" for i in range(FLEET)),
            store.upsert_mailboxes(
                [(f"u{i:04d}", f"u{i:04d}", "pilot" if i % 2 else "later") for i in range(FLEET)]
            ),
            strict=True,
        )
    )
    for i, mailbox_id in enumerate(ids.values()):
        store.set_mailbox_state(mailbox_id, MailboxState.FAILED if i % 3 == 0 else MailboxState.OK)
        store.mailbox_progress(mailbox_id, MailboxProgress(100, 10_000, i % 100, i * 100, i % 7, 0, None))
    return ids


def seeded_plan(root: Path) -> Plan:
    """``fleet_plan`` with every mailbox in its store (``seed``), the store closed again."""
    plan = fleet_plan(root)
    store = open_store(plan)
    try:
        seed(store)
    finally:
        store.close()
    return plan


def walk(store: StateStore, query: MailboxQuery) -> list[str]:
    """Every mailbox of ``query`` a window at a time, each window from the last one's last row."""
    seen: list[str] = []
    start = None
    while True:
        page = store.mailbox_page(MailboxQuery(**{**_fields(query), "start": start, "limit": PAGE}))
        rows = [row.source for row in page.rows]
        new = rows[1:] if start is not None else rows
        seen += new
        if len(rows) < PAGE:
            return seen
        start = rows[-1]


def _fields(query: MailboxQuery) -> dict[str, object]:
    return {name: getattr(query, name) for name in query.__slots__}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("order", ["mailbox", "failed", "progress"])
def test_windows_read_by_keyset_cover_the_list_in_its_order(
    tmp_path: Path, backend: str, order: str, request: pytest.FixtureRequest
) -> None:
    store = open_store(backend_plan(tmp_path, backend, request))
    try:
        seed(store)
        # The search: a substring in any case, its text taken literally (LIKE's wildcards too).
        assert store.count_mailboxes(MailboxQuery(text="U01")) == PAGE - 20 and not store.count_mailboxes(
            MailboxQuery(text="u_1")
        )
        for query in (MailboxQuery(order=order), MailboxQuery(order=order, attention=True, text="u0")):
            whole = [row.source for row in store.mailbox_page(query).rows]
            assert walk(store, query) == whole and len(whole) > PAGE
            # The last window, and one that starts ten rows before a mailbox in the middle.
            last = store.mailbox_page(MailboxQuery(**{**_fields(query), "back": PAGE, "limit": PAGE}))
            assert [row.source for row in last.rows] == whole[-PAGE:] and last.start == whole[-PAGE]
            middle = whole[len(whole) // 2]
            back = store.mailbox_page(
                MailboxQuery(**{**_fields(query), "start": middle, "back": 10, "limit": 20})
            )
            assert [row.source for row in back.rows] == whole[len(whole) // 2 - 10 : len(whole) // 2 + 10]
            # Fewer rows before it than asked: the window starts at the first.
            near = store.mailbox_page(
                MailboxQuery(**{**_fields(query), "start": whole[3], "back": 10, "limit": 5})
            )
            assert (near.start, [row.source for row in near.rows]) == (None, whole[:5])
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_search_finds_the_same_mailboxes_through_its_index_as_by_a_pass_over_all(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = backend_plan(tmp_path, backend, request)
    store = open_store(plan)
    try:
        seed(store)
        store.upsert_mailboxes([("Odd%_Name\\x", "ODD@example.net", "later")])
        every = [(row.source, row.target, row.state) for row in store.mailbox_page(MailboxQuery()).rows]

        def found(text: str) -> list[str]:
            rows = store.mailbox_page(MailboxQuery(text=text, limit=PAGE)).rows
            assert store.count_mailboxes(MailboxQuery(text=text)) == len(walk(store, MailboxQuery(text=text)))
            return [row.source for row in rows]

        needles = ("U012", "u02", "d%_n", "odd@EX", "%_n", "_", "fail", "ok", "u0", "\\x", "nothing")
        for needle in needles:
            expected = [s for s, t, st in every if needle.lower() in s.lower() or needle.lower() in t.lower()
                        or needle.lower() in st][:PAGE]  # fmt: skip
            assert found(needle) == expected, needle
            if backend == "sqlite":  # every match dense: the ordered scan instead of the trigram table
                monkeypatch.setattr(mailbox_search, "DENSE", 1)
                assert found(needle) == expected, needle
                monkeypatch.undo()
    finally:
        store.close()


def test_a_store_made_before_the_search_index_gains_it_whole(tmp_path: Path) -> None:
    plan = fleet_plan(tmp_path)
    store = StateStore(plan.state_db)
    seed(store)
    with store.transaction() as db:  # as a store made before it had one
        for name in ("mailboxes_text_insert", "mailboxes_text_delete", "mailboxes_text_update"):
            db.execute(f"DROP TRIGGER {name}")
        db.execute("DROP TABLE mailboxes_text")
        db.execute("DELETE FROM meta WHERE key = 'mailboxes_text'")
    store.upsert_mailboxes([("late", "late", "pilot")])
    store.close()
    store = StateStore(plan.state_db)  # the schema runs again
    try:
        assert [row.source for row in store.mailbox_page(MailboxQuery(text="u029")).rows] == [
            f"u{i:04d}" for i in range(290, FLEET)
        ]
        assert [row.source for row in store.mailbox_page(MailboxQuery(text="LATE")).rows] == ["late"]
        # Every mailbox indexed: u0200 to u0299.
        matched = store.query("SELECT COUNT(*) AS n FROM mailboxes_text WHERE mailboxes_text MATCH '\"u02\"'")
        assert matched[0]["n"] == 100
    finally:
        store.close()


def seed_some(store: StateStore) -> None:
    """Two mailboxes of three in the store (the rest planned, not touched by a run yet), some with
    nothing failed or copied (they sort among the untouched ones), some running."""
    sources = [f"u{i:04d}" for i in range(FLEET) if i % 3 != 2]
    ids = store.upsert_mailboxes([(s, s, "pilot" if int(s[1:]) % 2 else "later") for s in sources])
    for n, mailbox_id in enumerate(ids):
        state = (MailboxState.FAILED, MailboxState.OK, MailboxState.RUNNING)[n % 3]
        store.set_mailbox_state(mailbox_id, state)
        done = 0 if n % 4 == 0 else n % 50
        store.mailbox_progress(mailbox_id, MailboxProgress(100, 10_000, done, done * 100, n % 5, 0, None))


def every_row(store: StateStore, plan: Plan, query: MailboxQuery) -> list[tuple[str, str]]:
    """The whole list of ``query`` read at once: (source, state) per row."""
    return [(row.source, row.state) for row in take(store, plan, query=query).mailboxes]


def down_from_home(store: StateStore, plan: Plan, query: MailboxQuery) -> list[tuple[str, str]]:
    """Every row, a window at a time from the first, each window from the last one's last row."""
    seen: list[tuple[str, str]] = []
    start = None
    while True:
        rows = take(
            store, plan, query=MailboxQuery(**{**_fields(query), "start": start, "limit": PAGE})
        ).mailboxes
        seen += [(row.source, row.state) for row in rows[1 if start is not None else 0 :]]
        if len(rows) < PAGE:
            return seen
        start = rows[-1].source


def up_from_end(store: StateStore, plan: Plan, query: MailboxQuery) -> list[tuple[str, str]]:
    """Every row, a window at a time from the last (End), each read backwards from the last one's start."""
    seen: list[tuple[str, str]] = []
    start = None
    while True:
        snapshot = take(
            store, plan, query=MailboxQuery(**{**_fields(query), "start": start, "back": PAGE, "limit": PAGE})
        )
        rows = [(row.source, row.state) for row in snapshot.mailboxes]
        sources = [source for source, _ in rows]
        if start in sources:  # the window reaches its anchor: the rows from there on are read already
            rows = rows[: sources.index(start)]
        seen = rows + seen
        if snapshot.window_start is None:
            return seen
        start = snapshot.window_start


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("order", ["mailbox", "failed", "progress"])
def test_end_and_home_show_the_same_rows_with_planned_mailboxes_the_store_has_not_seen(
    tmp_path: Path, backend: str, order: str, request: pytest.FixtureRequest
) -> None:
    plan = backend_plan(tmp_path, backend, request)
    store = open_store(plan)
    try:
        seed_some(store)
        for query in (MailboxQuery(order=order), MailboxQuery(order=order, text="U0", wave="pilot")):
            whole = every_row(store, plan, query)
            states = [state for _, state in whole]
            # The untouched mailboxes are in the list, in their place (they and the store's rows of
            # value 0 go by source), not only after the store's rows.
            assert states.count(MailboxState.PENDING) >= FLEET // 6
            assert MailboxState.FAILED in states[states.index(MailboxState.PENDING) :]
            assert down_from_home(store, plan, query) == whole
            assert up_from_end(store, plan, query) == whole
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_mailbox_view_reads_its_ledger_off_the_ui_thread(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = backend_plan(tmp_path, backend, request)
    store = open_store(plan)
    far = f"u{FLEET - 3:04d}"
    try:
        ids = seed(store)
        folder = store.folder(ids[far], "Archive", "Archive", "Archive", None)
        store.folder_error(folder.id, "NO [CANNOT] the folder is locked")
    finally:
        store.close()
    readers: list[int] = []
    mailbox_detail = StateStore.mailbox_detail

    def spied(self: StateStore, source: str) -> MailboxDetail:
        readers.append(threading.get_ident())
        return mailbox_detail(self, source)

    monkeypatch.setattr(StateStore, "mailbox_detail", spied)

    async def until(pilot: Pilot[None], done: Callable[[], bool]) -> None:
        deadline = (
            time.monotonic() + 90
        )  # the poller's threads deliver when they have read (PostgreSQL, a busy machine)
        while time.monotonic() < deadline:
            if done():
                return
            await pilot.pause(0.01)
        raise AssertionError("nothing arrived from the poller")

    async def scenario() -> None:
        app = CockpitApp(plan)  # with its poller, as `cutover tui` runs it
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            app.open_mailbox(far)
            await until(pilot, lambda: isinstance(app.screen, MailboxView) and app.screen.detail is not None)
            assert isinstance(app.screen, MailboxView)
            folders = app.screen.query_one("#folders", FleetTable)
            assert folders.row_count == 1 and "locked" in folders.row_text(folders.keys[0])
            assert readers and threading.get_ident() not in readers

    asyncio.run(scenario())


async def settle(app: CockpitApp, pilot: Pilot[None]) -> None:
    """Poll until the view's query is the one its rows were read for (a window move asks again)."""
    for _ in range(5):
        feed(app)
        await pilot.pause()
        if app.snapshot is not None and app.snapshot.query == app.current_query():
            return
    raise AssertionError("the view kept asking for another window")


async def open_all(app: CockpitApp, pilot: Pilot[None]) -> FleetTable:
    """The mailboxes view with every mailbox ("/" then Enter on an empty line)."""
    await settle(app, pilot)
    await pilot.press("m")
    await settle(app, pilot)
    await pilot.press("slash", "enter")
    await settle(app, pilot)
    assert isinstance(app.screen, MailboxesView)
    return app.screen.query_one("#mailboxes", FleetTable)


class Deliveries:
    """What a poller delivered, in order, waited for from the test's thread."""

    def __init__(self) -> None:
        self.delivered: list[Snapshot] = []
        self.arrived = threading.Condition()

    def deliver(self, snapshot: Snapshot) -> None:
        with self.arrived:
            self.delivered.append(snapshot)
            self.arrived.notify_all()

    def after(self, count: int) -> Snapshot:
        """The delivery that follows the first ``count``, once it comes."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.delivered) > count, timeout=60), "nothing delivered"
            return self.delivered[count]


def test_a_view_that_comes_back_gets_its_rows_from_the_rows_reader_without_a_whole_poll(
    tmp_path: Path,
) -> None:
    """One mailbox's view, then the list, then the same mailbox again before the next whole poll:
    the rows reader hands the view its rows at once (the last whole read has them), as it does for
    a view it has never read."""
    from cockpit.poller import SnapshotPoller

    plan = seeded_plan(tmp_path)
    mailbox, listing = MailboxQuery(source="u0003"), MailboxesView.first_window()
    wanted = [mailbox]
    deliveries = Deliveries()
    deliver, next_delivery = deliveries.deliver, deliveries.after

    # The whole poll comes once, then not for an hour: what follows is the rows reader's alone.
    poller = SnapshotPoller(plan, deliver, interval=3600.0, query=lambda: wanted[0])
    poller.start()
    try:
        first = next_delivery(0)
        assert first.query == mailbox and first.detail is not None and first.detail.source == "u0003"
        wanted[0] = listing
        poller.poke_rows()
        assert next_delivery(1).query == listing
        wanted[0] = mailbox
        poller.poke_rows()
        back = next_delivery(2)
        assert back.query == mailbox and back.detail is not None and back.detail.source == "u0003"
    finally:
        poller.stop()


def test_scrolling_past_the_window_reaches_the_last_mailbox_and_back(tmp_path: Path) -> None:
    plan = fleet_plan(tmp_path)
    seed(StateStore(plan.state_db))

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(100, 30)) as pilot:
            table = await open_all(app, pilot)
            assert table.row_count == PAGE and table.cursor_key == "u0000"
            # Down, a key at a time, through every mailbox: the window moves on as the cursor nears its end.
            for n in range(1, FLEET):
                await pilot.press("down")
                if app.snapshot is not None and app.snapshot.query != app.current_query():
                    await settle(app, pilot)
                assert table.cursor_key == f"u{n:04d}"
            assert table.row_count < PAGE  # the window holds the end of the list
            await pilot.press("home")
            await settle(app, pilot)
            assert table.cursor_key == "u0000" and table.keys[0] == "u0000"
            await pilot.press("end")
            await settle(app, pilot)
            assert table.cursor_key == f"u{FLEET - 1:04d}"
            # Up from the last window: the rows before it are read as the cursor nears its top.
            for n in range(FLEET - 2, FLEET - PAGE - 30, -1):
                await pilot.press("up")
                if app.snapshot is not None and app.snapshot.query != app.current_query():
                    await settle(app, pilot)
                assert table.cursor_key == f"u{n:04d}"

    asyncio.run(scenario())


def test_a_filter_finds_a_mailbox_beyond_the_first_window_and_its_updates_show(tmp_path: Path) -> None:
    plan = fleet_plan(tmp_path)
    store = StateStore(plan.state_db)
    ids = seed(store)
    far = f"u{FLEET - 3:04d}"

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(100, 30)) as pilot:
            table = await open_all(app, pilot)
            assert far not in table.keys
            await pilot.press("slash", *far, "enter")
            await settle(app, pilot)
            assert table.keys == (far,)
            label = app.screen.query_one("#filter-label")
            assert str(label.render()) == f"mailboxes, filter {far}: 1 of {FLEET:,}"
            # The runner moves it on while the view is open: the next poll shows it.
            store.set_mailbox_state(ids[far], MailboxState.RUNNING)
            store.mailbox_progress(ids[far], MailboxProgress(100, 10_000, 42, 4_200, 0, 0, "Archive"))
            await settle(app, pilot)
            assert "running" in table.row_text(far) and "42/100" in table.row_text(far)
            # Enter opens it (the drill-down reaches any mailbox of the fleet).
            await pilot.press("enter")
            await settle(app, pilot)
            assert app.screen.crumb == far
            # And back on the whole list, at its end, it shows there the same way.
            await pilot.press("escape", "escape")
            await settle(app, pilot)
            await pilot.press("end")
            await settle(app, pilot)
            store.mailbox_progress(ids[far], MailboxProgress(100, 10_000, 77, 7_700, 0, 0, "Archive"))
            await settle(app, pilot)
            assert "77/100" in table.row_text(far)

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_a_filter_and_a_window_move_read_only_the_views_rows_not_the_whole_fleet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enter on a filter, and the cursor nearing the window's end, ask the rows reader alone: the
    whole poll (at a fleet's size the wave totals of every mailbox, competing for the interpreter
    with the key's own drawing) waits for its time. Here its time is an hour away, so the rows can
    only have come from the rows reader."""
    import cockpit.poller as poller_module

    plan = seeded_plan(tmp_path)
    whole_reads: list[MailboxQuery | None] = []
    take_whole = poller_module.take

    def counted_take(*args: object, **kwargs: object) -> object:
        whole_reads.append(kwargs.get("query"))  # type: ignore[arg-type]
        return take_whole(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(poller_module, "take", counted_take)
    far = f"u{FLEET - 3:04d}"

    async def until(pilot: Pilot[None], holds: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not holds():
            assert time.monotonic() < deadline, "the view's rows never came"
            await pilot.pause(0.02)

    async def scenario() -> None:
        app = CockpitApp(plan)
        assert app._poller is not None
        app._poller.interval = 3600.0
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("m")
            await until(pilot, lambda: isinstance(app.screen, MailboxesView) and app.screen.query_one(
                "#mailboxes", FleetTable).row_count > 0)  # fmt: skip
            table = app.screen.query_one("#mailboxes", FleetTable)
            before = len(whole_reads)
            await pilot.press("slash", "enter")  # every mailbox, from the first
            await until(pilot, lambda: table.row_count == PAGE and table.keys[0] == "u0000")
            for _ in range(PAGE - 1):  # down to the window's last row: the window moves on
                await pilot.press("down")
            await until(pilot, lambda: table.keys[0] != "u0000" and table.cursor_key == f"u{PAGE - 1:04d}")
            await pilot.press("slash", *far, "enter")
            await until(pilot, lambda: table.keys == (far,))
            assert len(whole_reads) == before, whole_reads[before:]

    asyncio.run(scenario())


def test_a_kept_view_comes_back_in_the_theme_switched_while_it_was_away(tmp_path: Path) -> None:
    """The app keeps a closed view to open it again. Textual works a resumed screen's styles out
    again in case the theme changed meanwhile; the cockpit skips that only when nothing did."""
    plan = seeded_plan(tmp_path)

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(100, 30)) as pilot:
            table = await open_all(app, pilot)
            view = app.screen
            before = table.styles.background
            await pilot.press("escape")  # back to the overview; the view is kept
            assert app.screen is not view
            app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
            await pilot.pause()
            await pilot.press("m")
            await settle(app, pilot)
            assert app.screen is view  # the same view, opened again
            switched = table.styles.background
            assert switched != before
            assert switched == Color.parse(app.current_theme.surface)
            # And back and forth with nothing switched: the styles are not worked out again.
            restyled: list[bool] = []
            restyle = view.update_node_styles

            def counted(animate: bool = True) -> None:
                restyled.append(animate)
                restyle(animate)

            view.update_node_styles = counted  # type: ignore[method-assign]
            await pilot.press("escape")
            await pilot.press("m")
            await settle(app, pilot)
            assert app.screen is view and table.styles.background == switched
            assert restyled == []

    asyncio.run(scenario())


def test_the_mailboxes_view_opened_again_is_as_new(tmp_path: Path) -> None:
    """The app keeps a closed mailboxes view and shows it again: with the default filter, sorted by
    mailbox, on its first row, whatever was done in it before."""
    plan = fleet_plan(tmp_path)
    seed(StateStore(plan.state_db))

    async def scenario() -> None:
        app = CockpitApp(plan, poll=False)
        async with app.run_test(size=(100, 30)) as pilot:
            table = await open_all(app, pilot)
            view = app.screen
            assert isinstance(view, MailboxesView)
            await pilot.press("s", "end")  # sorted by failures, at the end of the list
            await settle(app, pilot)
            await pilot.press("slash", "u", "0")  # a filter typed, not applied
            await pilot.press("escape", "escape", "escape")  # the box closed, then back to the overview
            await settle(app, pilot)
            assert not isinstance(app.screen, MailboxesView)
            await pilot.press("m")
            await settle(app, pilot)
            assert app.screen is view and view.filter == NOT_OK and view.sort_key == "mailbox"
            table = view.query_one("#mailboxes", FleetTable)
            reader = StateStore(plan.state_db)
            first = [row.source for row in reader.mailbox_page(view.query_rows()).rows]
            reader.close()
            assert table.keys == tuple(first) and table.cursor_row == 0 and table.scroll_y == 0
            assert not view.query_one("#filter").display and app.focused is table
            label = str(view.query_one("#filter-label").render())
            assert label.startswith("mailboxes, filter needs attention (not OK)")

    asyncio.run(scenario())


def test_the_rows_reader_delivers_a_window_the_view_comes_back_to_whatever_was_delivered_last(
    tmp_path: Path,
) -> None:
    """A whole read started for one window can land after the view moved to another (the view drops
    it). Back on the first window, the rows reader must still deliver it: what was delivered last is
    not what the view shows. Here the whole poll always reads window A, the view asks for A, B, A."""
    from cockpit.poller import SnapshotPoller

    plan = seeded_plan(tmp_path)
    first, second = MailboxesView.first_window(), MailboxQuery(text="u01", order="mailbox", limit=PAGE)
    wanted = [first]
    deliveries = Deliveries()
    deliver, next_delivery = deliveries.deliver, deliveries.after

    def query() -> MailboxQuery:
        return first if threading.current_thread().name == "snapshots" else wanted[0]

    poller = SnapshotPoller(plan, deliver, interval=3600.0, query=query)
    poller.start()
    try:
        assert next_delivery(0).query == first  # the whole read
        wanted[0] = second
        poller.poke_rows()
        assert next_delivery(1).query == second  # the rows reader
        poller._wake.set()  # a whole read of the first window lands after it
        assert next_delivery(2).query == first
        wanted[0] = first  # the view goes back to the first window
        poller.poke_rows()
        assert next_delivery(3).query == first
    finally:
        poller.stop()

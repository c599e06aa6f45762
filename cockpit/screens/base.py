"""What every cockpit view shares: a breadcrumb title and refreshing from snapshots while visible."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

from runners.report.snapshot import Snapshot

if TYPE_CHECKING:
    from cockpit.app import CockpitApp


class View(Screen[None]):
    #: Shown in the header as "cutover › <crumb>".
    crumb = ""

    @property
    def cockpit(self) -> CockpitApp:
        from cockpit.app import CockpitApp

        assert isinstance(self.app, CockpitApp)
        return self.app

    def on_screen_resume(self) -> None:
        self.cockpit.poke()  # this view may want other rows than the last one
        self.app.sub_title = " › ".join(
            s.crumb for s in self.app.screen_stack if isinstance(s, View) and s.crumb
        )
        if self.cockpit.snapshot is not None:
            self.show(self.cockpit.snapshot)

    def show(self, snapshot: Snapshot) -> None:
        """Apply a snapshot; called only while this view is on top."""

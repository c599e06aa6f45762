"""``cutover proxy``'s process freezes what start-up made before it serves, so the collector's full
passes (which the sessions' garbage triggers) don't walk the modules and the plan every time."""

from __future__ import annotations

import gc

import pytest

from cockpit.commands import proxy as proxy_command


def test_start_up_objects_are_frozen_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    async def serving(plan: object, worker: object = None) -> int:
        seen.append(gc.get_freeze_count())
        return 0

    monkeypatch.setattr(proxy_command, "_run", serving)
    gc.unfreeze()
    try:
        assert proxy_command._serve(None, None) == 0  # type: ignore[arg-type]  # _run stands in
    finally:
        gc.unfreeze()  # the rest of the test run collects as before
    assert seen and seen[0] > 0

"""The closed step's work: the wave's report for the customer's sign-off, Markdown and JSON, written
into the state directory (``<state>/reports/``, private like every file there)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runners.plan.model import Plan
from runners.settle.report import StepRecord, render_json, render_markdown, wave_report
from runners.state.private import private_dir, write_private
from runners.state.store import StateStore


def step_records(store: StateStore, wave: str) -> list[StepRecord]:
    """The window's steps of ``wave`` as the report takes them (oldest first)."""
    return [StepRecord(r.step, r.started, r.ended, str(r.actor), {**r.params, "status": r.status})
            for r in store.wave_steps(wave)]  # fmt: skip


def reports_dir(plan: Plan) -> Path:
    return Path(plan.state_db).parent / "reports"


def write_report(plan: Plan, store: StateStore, wave: str) -> dict[str, Any]:
    """Write the wave's report; returns the paths and the report itself (for ``--output json``)."""
    report = wave_report(plan, wave, step_records(store, wave), store=store)
    base = reports_dir(plan) / f"{_file_name(wave)}.report"
    private_dir(base.parent)
    paths = {}
    for suffix, text in ((".md", render_markdown(report)), (".json", render_json(report))):
        path = base.with_suffix(base.suffix + suffix)
        write_private(path, text)
        paths["markdown" if suffix == ".md" else "json"] = str(path)
    return {"report_files": paths, "report": report}


def _file_name(wave: str) -> str:
    """The wave's name as a file name: nothing that could leave the directory or hide the file."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", wave) or "_"

"""``cutover demo --target graph``: the demo's pilot goes into the Graph emulator, as into Microsoft 365."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from dovecot_lab import CUTOVER

from lab.graph.demo import DEMO_APP_SECRET


def test_the_demo_pilot_goes_into_microsoft_365(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CUTOVER, "demo", "--headless", "--target", "graph", "--output", "json"],
        env=dict(os.environ) | {"XDG_CACHE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )

    assert proc.returncode == 0, proc.stderr  # every seeded problem explained
    report = json.loads(proc.stdout)
    assert report["ok"]
    assert report["verify"]["compared_by"] == "kept-fields"  # Exchange Online re-renders: never bytes
    copied = {m["source"]: m["copied"] for m in report["pilot"]["mailboxes"]}
    assert sum(copied.values()) > 0
    graph_checks = {
        c["check_id"]: c["state"] for c in report["readiness"]["checks"] if c["check_id"].startswith("TGT-G")
    }
    assert graph_checks == dict.fromkeys(
        ("TGT-GAPP-041", "TGT-GBOX-042", "TGT-GSIZE-043", "TGT-GDNS-044"), "ok"
    )
    problems = {p["key"]: p for p in report["problems"]}
    assert all(p["ok"] for p in problems.values()), problems
    assert problems["oversized-message"][
        "ok"
    ]  # the 2 MB limit holds in Microsoft 365 too: skipped, with its reason
    assert DEMO_APP_SECRET not in proc.stdout + proc.stderr

"""``cutover demo --target ews``: the demo's pilot goes into the EWS emulator, as into Exchange."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from dovecot_lab import CUTOVER

from lab.ews.demo import SERVICE_ACCOUNT


def test_the_demo_pilot_goes_into_exchange(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CUTOVER, "demo", "--headless", "--target", "ews", "--output", "json"],
        env=dict(os.environ) | {"XDG_CACHE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )

    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert report["verify"]["compared_by"] == "kept-fields"  # Exchange re-renders: never bytes
    copied = {m["source"]: m["copied"] for m in report["pilot"]["mailboxes"]}
    assert sum(copied.values()) > 0
    ews_checks = {
        c["check_id"]: c["state"]
        for c in report["readiness"]["checks"]
        if c["check_id"].startswith("TGT-EWS")
    }
    assert ews_checks == dict.fromkeys(
        ("TGT-EWS-031", "TGT-EWS-032", "TGT-EWS-033", "TGT-EWS-034", "TGT-EWS-035"), "ok"
    )
    oversized = next(p for p in report["problems"] if p["key"] == "oversized-message")
    assert oversized["ok"], oversized  # the 2 MB limit holds on Exchange too: skipped, with its reason
    assert SERVICE_ACCOUNT[1] not in proc.stdout + proc.stderr

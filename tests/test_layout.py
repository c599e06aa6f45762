"""The package layout: the import contracts hold, and the product never loads the demo's lab."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONTRACTS = (
    "The product's layers: cockpit → checks → runners",
    "The engine's layers:",
    "No import cycles between the modules of a package, at any depth",
    "The lab is not the product: only cockpit.demo (`cutover demo`) imports it",
    "The lab imports nothing of the product",
)


def test_import_contracts_hold() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in CONTRACTS:
        assert name in proc.stdout, f"contract missing from pyproject.toml: {name}"


def test_the_product_never_loads_the_lab() -> None:
    # Every module of the product, except the `cutover demo` command's package, imported in one
    # fresh interpreter: neither the lab nor its servers' libraries may come along (cockpit.cli
    # imports cockpit.demo only when that command runs).
    script = """
import importlib, pkgutil, sys
import checks, cockpit, runners
for package in (cockpit, checks, runners):
    for module in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        if not module.name.startswith("cockpit.demo"):
            importlib.import_module(module.name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lab", "cockpit", "twisted", "ldaptor"))
print("\\n".join(loaded))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.split()
    assert "cockpit.app" in loaded and "cockpit.cli" in loaded  # the walk did import the product
    assert [m for m in loaded if m.split(".")[0] in ("lab", "twisted", "ldaptor")] == []
    assert [
        m for m in loaded if m.startswith("cockpit.demo.")
    ] == []  # walk_packages opens the package itself


def test_a_run_loads_no_parser_it_does_not_use() -> None:
    # What `cutover run` imports for an IMAP-to-IMAP plan: email's parser (verification, Exchange
    # targets, odd dates), difflib (a plan error's hint) and html (reports) stay out of every run's
    # start-up, which a fleet pays once per runner process (docs/benchmarks.md).
    script = """
import sys
import cockpit.cli, cockpit.commands.run
import runners.connectors.imap_source, runners.connectors.imap_target, runners.connectors.imap_recovery
print("\\n".join(sorted(sys.modules)))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.split()
    assert "runners.engine.wave" in loaded  # the run's own modules did load
    assert [m for m in loaded if m.split(".")[0] in ("email", "difflib", "html", "textual")] == []

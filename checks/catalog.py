"""Every check: imports each module under ``checks.families`` so that their ``@check`` decorators register.

The registry never imports this module (that would be a cycle: families → registry → catalog)."""

from __future__ import annotations

import importlib
import pkgutil

import checks.families
from checks.registry import CheckSpec, registered

for _module in pkgutil.walk_packages(checks.families.__path__, prefix="checks.families."):
    importlib.import_module(_module.name)


def all_checks() -> list[CheckSpec]:
    """Every check of every family, by category then id."""
    return registered()

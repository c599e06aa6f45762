"""Imports every module under ``checks.families`` so that their ``@check`` decorators register."""

from __future__ import annotations

import importlib
import pkgutil

import checks.families

for _module in pkgutil.walk_packages(checks.families.__path__, prefix="checks.families."):
    importlib.import_module(_module.name)

"""Every check registers itself here with a stable id; the runner asks the registry what to run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.model import CATEGORIES, Finding

if TYPE_CHECKING:
    from checks.context import CheckContext

CheckFunction = Callable[["CheckContext"], Iterable[Finding]]


class SkipCheck(Exception):
    """Raised by a check that doesn't apply (its inputs aren't in the plan, wrong phase)."""


@dataclass(frozen=True, slots=True)
class CheckSpec:
    id: str
    title: str
    category: str
    run: CheckFunction
    #: "pre", "post" or "any": the cutover phase the check applies to.
    phase: str = "any"


_REGISTRY: dict[str, CheckSpec] = {}


def check(
    check_id: str, title: str, *, category: str, phase: str = "any"
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check: ``@check("DNS-MX-001", "MX present and resolvable", category="dns")``."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")

    def register(func: CheckFunction) -> CheckFunction:
        if check_id in _REGISTRY and _REGISTRY[check_id].run is not func:
            raise ValueError(f"check id {check_id} registered twice")
        _REGISTRY[check_id] = CheckSpec(check_id, title, category, func, phase)
        return func

    return register


def registered() -> list[CheckSpec]:
    """The checks registered so far; ``checks.catalog.all_checks`` first imports every one."""
    return sorted(_REGISTRY.values(), key=lambda spec: (spec.category, spec.id))

"""Observation mode's arithmetic: of the failures of an execution that ran everything, how many the
rules would have caught, and how much time leaving the rest out would have saved."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from anvil.domain.results import FAILING


@dataclass(frozen=True)
class Observed:
    """One test's result in an execution that ran everything, and whether the rules chose it."""

    key: str
    status: str
    duration_s: float | None
    selected: bool


@dataclass(frozen=True)
class Observation:
    tests: int
    selected: int
    failures: int
    caught: int
    missed: int
    missed_tests: tuple[str, ...]
    time_total_s: float
    time_selected_s: float
    time_saved_s: float
    time_saved_fraction: float | None
    caught_fraction: float | None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "missed_tests": list(self.missed_tests)}


def observe(results: Iterable[Observed], *, missed_shown: int = 50) -> Observation:
    """How many failures the selection would have caught, how many it would have missed, and how
    much time it would have saved (the durations of the tests it would not have run)."""
    rows = list(results)
    failed = [r for r in rows if r.status in FAILING]
    caught = [r for r in failed if r.selected]
    missed = [r.key for r in failed if not r.selected]
    total = sum(r.duration_s or 0.0 for r in rows)
    chosen = sum(r.duration_s or 0.0 for r in rows if r.selected)
    return Observation(
        tests=len(rows),
        selected=sum(r.selected for r in rows),
        failures=len(failed),
        caught=len(caught),
        missed=len(missed),
        missed_tests=tuple(missed[:missed_shown]),
        time_total_s=round(total, 6),
        time_selected_s=round(chosen, 6),
        time_saved_s=round(total - chosen, 6),
        time_saved_fraction=round((total - chosen) / total, 4) if total > 0 else None,
        caught_fraction=round(len(caught) / len(failed), 4) if failed else None,
    )

"""What a test run produces: step records, their summary, and the run's outcome.

Runners build these; db/attempts.py stores them; the API and the event stream show them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from anvil.domain.states import Status


def summarize(statuses: list[str]) -> dict[str, Any]:
    """Counts of step results by status, plus the total."""
    counts = Counter(statuses)
    return {"total": len(statuses), **dict(sorted(counts.items()))}


@dataclass
class StepRecord:
    seq: int
    name: str
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    output: str | None = None
    output_truncated: bool = False
    error: str | None = None
    keyword: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    status: Status
    summary: dict[str, Any]
    error: str | None = None

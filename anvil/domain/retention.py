"""Retention: what is old enough to delete, and when the next round is due. Pure.

Executions (with their steps, transitions, live events and manual step results) are kept
``retention_days`` after they finished; the per-test results that statistics and flaky detection
read are kept ``results_retention_days``, longer by default, so history outlives step output.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# A round runs at most this often; one cut short by its time budget goes on at the next tick.
ROUND_EVERY_S = 60.0
# The longest a round keeps the beat from its other duties (each batch is its own transaction).
ROUND_BUDGET_S = 2.0


@dataclass(frozen=True)
class Cutoffs:
    executions: datetime  # trees whose every execution finished before this go
    results: datetime  # test results recorded before this go


def cutoffs(now: datetime, *, retention_days: int, results_retention_days: int) -> Cutoffs:
    return Cutoffs(now - timedelta(days=retention_days), now - timedelta(days=results_retention_days))


def next_round_at(now: datetime, *, finished: bool) -> datetime:
    """When the next round is due: after ROUND_EVERY_S, or at once when this one left work undone."""
    return now + timedelta(seconds=ROUND_EVERY_S) if finished else now

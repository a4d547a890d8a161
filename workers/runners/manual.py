"""Manual tests: record the steps as not yet run and hand the execution to a person (PAUSED).

The worker slot is free again at once; testers record results through the API or `anvil manual run`.
"""

from __future__ import annotations

from anvil.domain.enums import StepStatus
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, StepRecord, summarize
from workers.runners.base import RunContext


def run(ctx: RunContext) -> Outcome:
    statuses: list[str] = []
    for seq, step in enumerate(ctx.spec["steps"], start=1):
        record = StepRecord(
            seq=seq,
            name=step["action"],
            status=StepStatus.NOT_RUN,
            details={"action": step["action"], "expected": step.get("expected")},
        )
        if not ctx.emit(record):
            return Outcome(Status.ERROR, summarize(statuses), "attempt lost its lease")
        statuses.append(record.status)
    return Outcome(Status.PAUSED, summarize(statuses), None)

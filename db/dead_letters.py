"""Dead letters: the executions the system gave up on (ABORTED: attempts exhausted after lost
workers, a suite's fail-fast), newest first, each with the transition that aborted it (who, when,
why) beside its error text."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.states import Status
from db.models import Execution, ExecutionTransition


@dataclass(frozen=True)
class DeadLetter:
    execution: Execution
    aborted_by: ExecutionTransition | None  # None only for rows written before transitions existed


def recent_dead_letters(session: Session, *, limit: int) -> list[DeadLetter]:
    """The ``limit`` most recently aborted executions. Two queries: the executions (through the
    ``(status, …)`` index: ABORTED rows are few), then their ABORTED transitions."""
    executions = list(
        session.scalars(
            select(Execution)
            .where(Execution.status == Status.ABORTED.value)
            .order_by(Execution.finished_at.desc().nulls_last(), Execution.id)
            .limit(limit)
        )
    )
    if not executions:
        return []
    transitions = session.scalars(
        select(ExecutionTransition)
        .where(
            ExecutionTransition.execution_id.in_([e.id for e in executions]),
            ExecutionTransition.to_status == Status.ABORTED.value,
        )
        .order_by(ExecutionTransition.id)
    )
    last = {t.execution_id: t for t in transitions}  # ordered by id: the last one wins
    return [DeadLetter(e, last.get(e.id)) for e in executions]

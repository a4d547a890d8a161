"""Cancellation, stored in the database so it survives restarts of anything."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from anvil.domain.states import FINISHED, Status
from anvil.errors import Conflict
from db.executions import get_execution
from db.models import Execution
from db.sql import db_now
from db.transitions import transition

# Cancelled at once; a later delivery of their message finds them CANCELLED and drops it.
AT_ONCE = (Status.PENDING, Status.SCHEDULED, Status.QUEUED, Status.PAUSED)


def cancel(session: Session, execution_id: uuid.UUID, *, actor: str, reason: str = "cancelled") -> Execution:
    """Cancel one execution (a suite, or a case split into shards: every unfinished member too).

    Waiting or PAUSED: CANCELLED now. RUNNING: a cancel request its worker acts on within about a
    second (it kills the test and records CANCELLED); if that worker is gone, the lease sweep does.
    """
    execution = get_execution(session, execution_id)
    status = Status(execution.status)
    if status in FINISHED:
        raise Conflict(
            f"execution {execution_id} already finished ({status.value})", current_status=status.value
        )
    if execution.case_snapshot.get("kind") == "suite" or execution.shard_plan is not None:
        members = session.scalars(
            select(Execution.id).where(
                Execution.root_execution_id == execution_id,
                Execution.id != execution_id,
                Execution.status.not_in([s.value for s in FINISHED]),
            )
        ).all()
        for member in members:
            whose = "suite" if execution.shard_plan is None else "sharded run"
            _cancel_one(session, member, actor=actor, reason=f"{whose} cancelled: {reason}")
        transition(session, execution_id, Status.CANCELLED, actor=actor, reason=reason,
                   values={"finished_at": db_now(session)})  # fmt: skip
    else:
        _cancel_one(session, execution_id, actor=actor, reason=reason)
    session.flush()
    return get_execution(session, execution_id)


def _cancel_one(session: Session, execution_id: uuid.UUID, *, actor: str, reason: str) -> None:
    current = session.scalar(select(Execution.status).where(Execution.id == execution_id).with_for_update())
    if current is None or Status(current) in FINISHED:
        return
    if Status(current) in AT_ONCE:
        transition(session, execution_id, Status.CANCELLED, from_=Status(current), actor=actor, reason=reason,
                   values={"finished_at": db_now(session)})  # fmt: skip
    else:  # RUNNING: the worker owns the test process; ask it to stop
        session.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.cancel_requested_at.is_(None))
            .values(cancel_requested_at=db_now(session))
        )


def cancel_requested(session: Session, execution_id: uuid.UUID, *, attempt: int) -> bool:
    """Has someone asked this running attempt to stop? (The worker polls this.)"""
    row = session.execute(
        select(Execution.cancel_requested_at, Execution.attempt, Execution.status).where(
            Execution.id == execution_id
        )
    ).one_or_none()
    return row is not None and row.attempt == attempt and row.cancel_requested_at is not None

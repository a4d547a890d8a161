"""The only writer of ``executions.status``.

Each change is a conditional UPDATE (the row must be in an allowed source status, and when an
attempt is given, still at that attempt) plus an append-only transition row, in the caller's
transaction. A refused change raises InvalidTransition (HTTP 409).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from anvil.errors import InvalidTransition, NotFound
from db.models import Execution, ExecutionTransition
from db.session import db_now
from db.states import ALLOWED, Status, sources_of


@dataclass(frozen=True)
class Transitioned:
    execution_id: uuid.UUID
    from_status: Status
    to_status: Status
    attempt: int


def transition(
    session: Session,
    execution_id: uuid.UUID,
    to: Status,
    *,
    actor: str,
    reason: str | None = None,
    from_: Status | Iterable[Status] | None = None,
    attempt: int | None = None,
    values: dict[str, Any] | None = None,
) -> Transitioned:
    """Move one execution to ``to``; raise InvalidTransition when it is not allowed right now.

    ``from_`` narrows the allowed sources; a single source status costs one statement, several
    cost a locking read first (so the transition row can name where it came from).
    ``attempt`` is the fencing token: the change only applies while the row is at that attempt.
    ``values`` are other columns set in the same UPDATE (they may be SQL expressions).
    """
    allowed = sources_of(to)
    if from_ is not None:
        wanted = {from_} if isinstance(from_, Status) else set(from_)
        allowed = allowed & frozenset(wanted)
    if len(allowed) == 1:
        (src,) = allowed
    else:
        current = session.execute(
            select(Execution.status, Execution.attempt).where(Execution.id == execution_id).with_for_update()
        ).one_or_none()
        if current is None:
            raise NotFound(f"execution {execution_id} does not exist")
        src = Status(current.status)
        if src not in allowed:
            raise _refused(execution_id, src, to, attempt, current.attempt)

    stmt = (
        update(Execution)
        .where(Execution.id == execution_id, Execution.status == src.value)
        .values(status=to.value, **(values or {}))
        .returning(Execution.attempt)
    )
    if attempt is not None:
        stmt = stmt.where(Execution.attempt == attempt)
    if to in (Status.QUEUED,):
        stmt = stmt.values(queued_at=db_now(session))
    new_attempt = session.execute(stmt).scalar_one_or_none()
    if new_attempt is None:
        row = session.execute(
            select(Execution.status, Execution.attempt).where(Execution.id == execution_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"execution {execution_id} does not exist")
        raise _refused(execution_id, Status(row.status), to, attempt, row.attempt)

    session.execute(
        insert(ExecutionTransition).values(
            execution_id=execution_id,
            attempt=new_attempt,
            from_status=src.value,
            to_status=to.value,
            actor=actor,
            reason=reason,
        )
    )
    return Transitioned(execution_id, src, to, new_attempt)


def record_initial(
    session: Session, execution_id: uuid.UUID, status: Status, *, actor: str, reason: str | None
) -> None:
    """The transition row for a newly inserted execution (from nothing to its first status)."""
    session.execute(
        insert(ExecutionTransition).values(
            execution_id=execution_id,
            attempt=0,
            from_status=None,
            to_status=status.value,
            actor=actor,
            reason=reason,
        )
    )


def _refused(
    execution_id: uuid.UUID, src: Status, to: Status, want_attempt: int | None, attempt: int
) -> InvalidTransition:
    if want_attempt is not None and want_attempt != attempt:
        return InvalidTransition(
            f"execution {execution_id} is at attempt {attempt}, not {want_attempt}",
            current_status=src.value,
        )
    if to in ALLOWED[src]:
        return InvalidTransition(
            f"execution {execution_id} is {src.value}; it cannot move to {to.value} from there now",
            current_status=src.value,
        )
    return InvalidTransition(
        f"execution {execution_id} is {src.value}; {src.value} -> {to.value} is not allowed",
        current_status=src.value,
    )

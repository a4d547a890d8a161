"""The live-event log: one row per transition or step result, numbered per root execution.

Numbers come from the root's ``event_seq``, bumped under its row lock in the writer's transaction,
so a stream's numbers appear in commit order. After the commit, listeners are nudged through Redis
pub/sub (a hint only: the stream always reads the rows from the database).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import case, event, insert, select, update
from sqlalchemy.orm import Session

from db.models import Execution, ExecutionEvent

log = logging.getLogger("anvil.events")
_PENDING = "anvil_event_roots"


def bump_self_expr() -> Any:
    """SET clause for a status/lease UPDATE: bump the counter when the row is its own root."""
    return case(
        (Execution.root_execution_id == Execution.id, Execution.event_seq + 1), else_=Execution.event_seq
    )


def next_seq(session: Session, root_id: uuid.UUID) -> int:
    """Take the next event number of ``root_id``'s stream (locks the root row until commit)."""
    return session.execute(
        update(Execution)
        .where(Execution.id == root_id)
        .values(event_seq=Execution.event_seq + 1)
        .returning(Execution.event_seq)
    ).scalar_one()


def append(
    session: Session,
    *,
    execution_id: uuid.UUID,
    root_id: uuid.UUID,
    seq: int | None,
    type_: str,
    data: dict[str, Any],
) -> int:
    """Insert one event; ``seq`` is given when the caller's UPDATE already bumped its own root."""
    if seq is None:
        seq = next_seq(session, root_id)
    session.execute(
        insert(ExecutionEvent).values(
            root_execution_id=root_id, seq=seq, execution_id=execution_id, type=type_, data=data
        )
    )
    session.info.setdefault(_PENDING, set()).add(root_id)
    return seq


def list_events(
    session: Session,
    *,
    root_id: uuid.UUID,
    after: int,
    execution_id: uuid.UUID | None = None,
    limit: int = 500,
) -> list[ExecutionEvent]:
    stmt = select(ExecutionEvent).where(
        ExecutionEvent.root_execution_id == root_id, ExecutionEvent.seq > after
    )
    if execution_id is not None:
        stmt = stmt.where(ExecutionEvent.execution_id == execution_id)
    return list(session.scalars(stmt.order_by(ExecutionEvent.seq).limit(limit)))


def channel(root_id: uuid.UUID) -> str:
    return f"anvil:events:{root_id}"


@event.listens_for(Session, "after_commit")
def _notify(session: Session) -> None:
    roots = session.info.pop(_PENDING, None)
    if roots:
        from db.notify import nudge

        nudge([channel(r) for r in roots])


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)

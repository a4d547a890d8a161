"""The live-event log: one row per transition or step result, numbered per root execution.

Numbers come from the root's ``event_seq``, bumped under its row lock in the writer's transaction,
so a stream's numbers appear in commit order. After the commit, listeners are nudged through Redis
pub/sub (a hint only: the stream always reads the rows from the database).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from db.models import Execution, ExecutionEvent
from db.types import utcnow

log = logging.getLogger("anvil.events")
_PENDING = "anvil_event_roots"
NOTE_KEYS = (_PENDING,)  # dropped by a rollback, restored back to a savepoint (db/session.py)
# Core tables: these statements run for every transition and step, so they skip the ORM's work.
EXECUTIONS = cast(Table, Execution.__table__)
EVENTS = cast(Table, ExecutionEvent.__table__)

INSERT_EVENT = insert(EVENTS)


def next_seq(session: Session, root_id: uuid.UUID, count: int = 1) -> int:
    """Take the next ``count`` event numbers of ``root_id``'s stream; returns the last of them.

    Locks the root row until commit, so the numbers appear in commit order.
    """
    c = EXECUTIONS.c
    return session.execute(
        update(EXECUTIONS).where(c.id == root_id).values(event_seq=c.event_seq + count).returning(c.event_seq)
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
        INSERT_EVENT,
        {
            "root_execution_id": root_id,
            "seq": seq,
            "execution_id": execution_id,
            "type": type_,
            "data": data,
            "at": utcnow(),
        },
    )
    note_written(session, root_id)
    return seq


def note_written(session: Session, root_id: uuid.UUID) -> None:
    """Nudge ``root_id``'s listeners once this transaction commits."""
    session.info.setdefault(_PENDING, set()).add(root_id)


def append_many(
    session: Session,
    *,
    execution_id: uuid.UUID,
    root_id: uuid.UUID,
    last_seq: int | None,
    type_: str,
    datas: list[dict[str, Any]],
) -> None:
    """Insert several events of one execution in one statement, numbered up to ``last_seq`` (given
    when the caller's UPDATE already bumped its own root by ``len(datas)``)."""
    if not datas:
        return
    if last_seq is None:
        last_seq = next_seq(session, root_id, len(datas))
    first, now = last_seq - len(datas) + 1, utcnow()
    rows = [
        {
            "root_execution_id": root_id,
            "seq": first + i,
            "execution_id": execution_id,
            "type": type_,
            "data": data,
            "at": now,
        }
        for i, data in enumerate(datas)
    ]
    session.execute(INSERT_EVENT, rows)
    note_written(session, root_id)


def transition_data(
    execution_id: uuid.UUID,
    *,
    src: str | None,
    to: str,
    actor: str,
    reason: str | None,
    at: datetime,
    attempt: int | None = None,
    transition_id: int | None = None,
) -> dict[str, Any]:
    """The data of a transition event, as the live stream shows it. ``attempt`` and
    ``transition_id`` are left out when the statement that writes the row adds them."""
    data: dict[str, Any] = {
        "execution_id": str(execution_id),
        "from": src,
        "to": to,
        "actor": actor,
        "reason": reason,
        "at": at.isoformat(),
    }
    if transition_id is not None:
        data["transition_id"] = transition_id
    if attempt is not None:
        data["attempt"] = attempt
    return data


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


def nudge_listeners(session: Session) -> None:
    """After a commit: wake the streams of the roots that got events (db/session.py registers it)."""
    roots = session.info.pop(_PENDING, None)
    if roots:
        from db.notify import nudge  # Redis is loaded only by processes that write events

        nudge([channel(r) for r in roots])

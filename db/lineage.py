"""The execution graph: ancestors, descendants and siblings by parent pointers; correlation chains."""

from __future__ import annotations

import uuid

from sqlalchemy import literal, select
from sqlalchemy.orm import Session, aliased

from anvil.errors import NotFound
from db.models import Execution


def ancestors(session: Session, execution: Execution, *, depth: int) -> list[Execution]:
    """From the root down to the parent (at most ``depth`` levels), in one recursive query."""
    if execution.parent_execution_id is None:
        return []
    up = (
        select(Execution.id, Execution.parent_execution_id, literal(1).label("level"))
        .where(Execution.id == execution.parent_execution_id)
        .cte("up", recursive=True)
    )
    parent = aliased(Execution)
    up = up.union_all(
        select(parent.id, parent.parent_execution_id, (up.c.level + 1).label("level"))
        .join(up, parent.id == up.c.parent_execution_id)
        .where(up.c.level < depth)
    )
    rows = session.execute(
        select(Execution, up.c.level).join(up, Execution.id == up.c.id).order_by(up.c.level.desc())
    ).all()
    return [row[0] for row in rows]


def descendants(session: Session, execution: Execution, *, depth: int) -> list[tuple[Execution, int]]:
    """Everything spawned from it, breadth-first (level, then creation order), at most ``depth`` levels."""
    down = (
        select(Execution.id, literal(1).label("level"))
        .where(Execution.parent_execution_id == execution.id)
        .cte("down", recursive=True)
    )
    child = aliased(Execution)
    down = down.union_all(
        select(child.id, (down.c.level + 1).label("level"))
        .join(down, child.parent_execution_id == down.c.id)
        .where(down.c.level < depth)
    )
    rows = session.execute(
        select(Execution, down.c.level)
        .join(down, Execution.id == down.c.id)
        .order_by(down.c.level, Execution.created_at, Execution.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def siblings(session: Session, execution: Execution) -> list[Execution]:
    if execution.parent_execution_id is None:
        return []
    return list(
        session.scalars(
            select(Execution)
            .where(
                Execution.parent_execution_id == execution.parent_execution_id, Execution.id != execution.id
            )
            .order_by(Execution.created_at, Execution.id)
        )
    )


def correlation_chain(session: Session, correlation_id: uuid.UUID) -> list[Execution]:
    rows = list(
        session.scalars(
            select(Execution)
            .where(Execution.correlation_id == correlation_id)
            .order_by(Execution.created_at, Execution.id)
        )
    )
    if not rows:
        raise NotFound(f"no executions with correlation id {correlation_id}", field="correlation_id")
    return rows


def chain_root(rows: list[Execution]) -> Execution:
    """The execution the chain started from: the one whose id is the correlation id, else the oldest."""
    for row in rows:
        if row.id == row.correlation_id:
            return row
    return rows[0]

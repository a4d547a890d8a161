"""Deleting what retention no longer keeps, one small batch per statement (scheduler/retention.py
gives each batch its own short transaction).

An execution goes with its whole tree (``root_execution_id``: a suite run with its members, a test
with its retries), once every execution of the tree finished before the cutoff; a tree with an
execution still active, or one that finished recently, is kept whole. Its rows go children first:
step traces, manual step results, live events and transitions, then the executions themselves,
leaves before their parents (``parent_execution_id`` is a foreign key). A batch interrupted by a
crash leaves a tree that is still expired: the next round finishes it.

Test results are no foreign key of executions: they outlive them until their own cutoff. A test
with no result left, not quarantined and with no recent quarantine audit, goes too. Webhook
deliveries that were delivered or given up on go with the executions' cutoff.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anvil.domain.states import FINISHED
from db.models import (
    Execution,
    ExecutionEvent,
    ExecutionTransition,
    ManualStepResult,
    ResultRollup,
    SchedulerLease,
    StepTrace,
    Test,
    TestQuarantineEvent,
    TestResult,
    WebhookDelivery,
)

EXECUTIONS = cast(Table, Execution.__table__)
# What hangs off an execution, deleted before it: (its name in the log, its table). Live events are
# found by their root (numbered per root, indexed so); the others by their execution.
DEPENDENTS: tuple[tuple[str, Table], ...] = (
    ("steps", cast(Table, StepTrace.__table__)),
    ("manual_results", cast(Table, ManualStepResult.__table__)),
    ("events", cast(Table, ExecutionEvent.__table__)),
    ("transitions", cast(Table, ExecutionTransition.__table__)),
)
FINISHED_VALUES = sorted(s.value for s in FINISHED)
ROUND = "retention"  # its row in scheduler_leases: expires_at is when the next round is due


def take_round(session: Session, *, holder: str, now: datetime, next_at: datetime) -> bool:
    """True (and the next round set to ``next_at``) when a round is due now."""
    lease = cast(Table, SchedulerLease.__table__)
    due = session.execute(
        update(lease)
        .where(lease.c.name == ROUND, lease.c.expires_at <= now)
        .values(holder=holder, expires_at=next_at)
        .returning(lease.c.name)
    ).scalar_one_or_none()
    if due is not None:
        return True
    if session.get(SchedulerLease, ROUND) is not None:
        return False
    try:
        with session.begin_nested():
            session.execute(insert(lease).values(name=ROUND, holder=holder, expires_at=next_at))
    except IntegrityError:
        return False  # another beat's first round
    return True


def set_next_round(session: Session, *, at: datetime) -> None:
    lease = cast(Table, SchedulerLease.__table__)
    session.execute(update(lease).where(lease.c.name == ROUND).values(expires_at=at))


def expired_roots(session: Session, *, cutoff: datetime, limit: int) -> list[uuid.UUID]:
    """Roots of trees whose every execution finished before ``cutoff``, oldest first."""
    root, member = EXECUTIONS.alias("root"), EXECUTIONS.alias("member")
    younger = (
        select(1)
        .select_from(member)
        .where(
            member.c.root_execution_id == root.c.id,
            or_(
                member.c.status.not_in(FINISHED_VALUES),
                func.coalesce(member.c.finished_at, member.c.created_at) >= cutoff,
            ),
        )
    )
    return list(
        session.scalars(
            select(root.c.id)
            .where(
                root.c.id == root.c.root_execution_id,
                root.c.created_at < cutoff,  # the index's range: nothing created later finished before
                root.c.status.in_(FINISHED_VALUES),
                ~exists(younger),
            )
            .order_by(root.c.created_at, root.c.id)
            .limit(limit)
        )
    )


def delete_dependents(session: Session, *, table: Table, roots: Sequence[uuid.UUID], limit: int) -> int:
    """Up to ``limit`` rows of ``table`` that belong to executions of these trees."""
    if "root_execution_id" in table.c:
        where: Any = table.c.root_execution_id.in_(roots)
    else:
        members = select(EXECUTIONS.c.id).where(EXECUTIONS.c.root_execution_id.in_(roots))
        where = table.c.execution_id.in_(members)
    batch = select(table.c.id).where(where).limit(limit)
    return _count(session.execute(delete(table).where(table.c.id.in_(batch))))


def delete_executions(session: Session, *, roots: Sequence[uuid.UUID], limit: int) -> int:
    """Up to ``limit`` executions of these trees that no execution names as its parent."""
    child = EXECUTIONS.alias("child")
    leaves = (
        select(EXECUTIONS.c.id)
        .where(
            EXECUTIONS.c.root_execution_id.in_(roots),
            ~exists(select(1).select_from(child).where(child.c.parent_execution_id == EXECUTIONS.c.id)),
        )
        .limit(limit)
    )
    ids = list(session.scalars(leaves))
    if not ids:
        return 0
    return _count(session.execute(delete(EXECUTIONS).where(EXECUTIONS.c.id.in_(ids))))


def delete_old_results(session: Session, *, cutoff: datetime, limit: int) -> int:
    results = cast(Table, TestResult.__table__)
    batch = (
        select(results.c.id)
        .where(results.c.recorded_at < cutoff)
        .order_by(results.c.recorded_at)
        .limit(limit)
    )
    return _count(session.execute(delete(results).where(results.c.id.in_(batch))))


def delete_old_rollups(session: Session, *, cutoff: datetime, limit: int) -> int:
    """Runs' rollups (db/test_results.py) recorded before ``cutoff``: they go with their results."""
    rollups = cast(Table, ResultRollup.__table__)
    batch = select(rollups.c.execution_id).where(rollups.c.recorded_at < cutoff).limit(limit)
    return _count(session.execute(delete(rollups).where(rollups.c.execution_id.in_(batch))))


def delete_forgotten_tests(session: Session, *, cutoff: datetime, limit: int) -> int:
    """Tests last seen before ``cutoff`` with no result left, not quarantined, no recent audit."""
    tests = cast(Table, Test.__table__)
    results = cast(Table, TestResult.__table__)
    audits = cast(Table, TestQuarantineEvent.__table__)
    batch = (
        select(tests.c.id)
        .where(
            tests.c.last_seen_at < cutoff,
            tests.c.quarantined_at.is_(None),
            ~exists(select(1).select_from(results).where(results.c.test_id == tests.c.id)),
            ~exists(
                select(1).select_from(audits).where(audits.c.test_id == tests.c.id, audits.c.at >= cutoff)
            ),
        )
        .limit(limit)
    )
    return _count(session.execute(delete(tests).where(tests.c.id.in_(batch))))


def delete_old_deliveries(session: Session, *, cutoff: datetime, limit: int) -> int:
    """Webhook deliveries created before ``cutoff`` that were delivered or given up on (the delivery
    log keeps executions' retention); one still being tried stays."""
    deliveries = cast(Table, WebhookDelivery.__table__)
    batch = (
        select(deliveries.c.id)
        .where(deliveries.c.created_at < cutoff, deliveries.c.status.in_(("delivered", "failed")))
        .limit(limit)
    )
    return _count(session.execute(delete(deliveries).where(deliveries.c.id.in_(batch))))


def _count(result: Any) -> int:
    return max(int(result.rowcount or 0), 0)

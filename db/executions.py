"""Data access for executions: create, find, list. What a running attempt writes: db/attempts.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.states import Status
from anvil.errors import InvalidInput, NotFound
from db.models import Execution, ExecutionTransition, StepTrace, TestCase
from db.pagination import page
from db.session import db_now
from db.transitions import record_initial
from db.types import utcnow


def case_snapshot(case: TestCase) -> dict[str, Any]:
    return {
        "name": case.name,
        "kind": case.kind,
        "spec": case.spec,
        "timeout_s": case.timeout_s,
        "version": case.version,
        "tags": list(case.tags or []),
    }


def create_execution(
    session: Session,
    *,
    case: TestCase | None = None,
    snapshot: dict[str, Any] | None = None,
    test_case_id: uuid.UUID | None = None,
    priority: Priority,
    trigger_kind: TriggerKind,
    requested_by: uuid.UUID | None,
    actor: str,
    run_id: str | None = None,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    parent_execution_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
    root_execution_id: uuid.UUID | None = None,
    max_attempts: int = 3,
    status: Status = Status.QUEUED,
    run_at: Any = None,
    retry_policy: dict[str, Any] | None = None,
    retry_index: int = 0,
    test_suite_id: uuid.UUID | None = None,
    expires_at: datetime | None = None,
    schedule_id: uuid.UUID | None = None,
    slot_at: datetime | None = None,
    reason: str = "submitted",
) -> Execution:
    """Insert a QUEUED (or SCHEDULED, with ``run_at``) execution of a case; the caller commits, then
    publishes. Give ``case``, or its ``test_case_id`` and ``snapshot`` (a retry copies its parent's)."""
    if case is not None:
        test_case_id, snapshot = case.id, case_snapshot(case)
    assert snapshot is not None, "create_execution needs a case or a snapshot"
    execution_id = uuid.uuid4()
    # One Python timestamp for the insert: a SQL now() would cost a read-back on the hot path.
    now = utcnow()
    queued = status is Status.QUEUED
    execution = Execution(
        id=execution_id,
        test_case_id=test_case_id,
        test_suite_id=test_suite_id,
        case_snapshot=snapshot,
        status=status.value,
        priority=priority.value,
        attempt=0,
        max_attempts=max_attempts,
        trigger_kind=trigger_kind.value,
        correlation_id=correlation_id or execution_id,
        root_execution_id=root_execution_id or execution_id,
        # A new root's first event (its QUEUED transition) is number 1: no extra UPDATE needed.
        event_seq=0 if root_execution_id else 1,
        parent_execution_id=parent_execution_id,
        run_id=run_id,
        requested_by=requested_by,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        params=params or {},
        created_at=now,
        queued_at=now if queued else None,
        # Published right after the commit; the reconciler measures silence from here.
        published_at=now if queued else None,
        publish_count=1 if queued else 0,
        run_at=run_at,
        retry_policy=retry_policy or {},
        retry_index=retry_index,
        expires_at=expires_at,
        schedule_id=schedule_id,
        slot_at=slot_at,
    )
    session.add(execution)
    session.flush()
    record_initial(
        session,
        execution_id,
        execution.root_execution_id,
        status,
        seq=None if root_execution_id else 1,
        actor=actor,
        reason=reason,
    )
    return execution


def find_idempotent(
    session: Session, *, requested_by: uuid.UUID, key: str, request_hash: str
) -> Execution | None:
    """The execution created earlier with this key, or None; 422 when the key was used otherwise."""
    existing = session.scalar(
        select(Execution).where(Execution.requested_by == requested_by, Execution.idempotency_key == key)
    )
    if existing is not None and existing.request_hash != request_hash:
        raise InvalidInput(
            "Idempotency-Key was already used with a different request body",
            field="Idempotency-Key",
        )
    return existing


def get_execution(session: Session, execution_id: uuid.UUID) -> Execution:
    execution = session.get(Execution, execution_id)
    if execution is None:
        raise NotFound(f"execution {execution_id} does not exist", field="id")
    return execution


def list_steps(session: Session, execution_id: uuid.UUID, *, attempt: int | None = None) -> list[StepTrace]:
    """Steps of one attempt (default: the latest attempt that recorded any), in order."""
    if attempt is None:
        attempt = session.scalar(
            select(func.max(StepTrace.attempt)).where(StepTrace.execution_id == execution_id)
        )
        if attempt is None:
            return []
    return list(
        session.scalars(
            select(StepTrace)
            .where(StepTrace.execution_id == execution_id, StepTrace.attempt == attempt)
            .order_by(StepTrace.seq)
        )
    )


def list_transitions(session: Session, execution_id: uuid.UUID) -> list[ExecutionTransition]:
    return list(
        session.scalars(
            select(ExecutionTransition)
            .where(ExecutionTransition.execution_id == execution_id)
            .order_by(ExecutionTransition.id)
        )
    )


def list_executions(
    session: Session,
    *,
    limit: int,
    cursor: str | None = None,
    status: list[str] | None = None,
    priority: list[str] | None = None,
    test_case_id: uuid.UUID | None = None,
    test_suite_id: uuid.UUID | None = None,
    parent_execution_id: uuid.UUID | None = None,
    trigger_kind: list[str] | None = None,
    correlation_id: uuid.UUID | None = None,
    run_id: str | None = None,
) -> tuple[list[Execution], str | None]:
    """Newest first, keyset-paginated on (created_at, id). Returns the page and the next cursor."""
    stmt = select(Execution)
    if status:
        stmt = stmt.where(Execution.status.in_(status))
    if priority:
        stmt = stmt.where(Execution.priority.in_(priority))
    if test_case_id:
        stmt = stmt.where(Execution.test_case_id == test_case_id)
    if test_suite_id:
        stmt = stmt.where(Execution.test_suite_id == test_suite_id)
    if parent_execution_id:
        stmt = stmt.where(Execution.parent_execution_id == parent_execution_id)
    if trigger_kind:
        stmt = stmt.where(Execution.trigger_kind.in_(trigger_kind))
    if correlation_id:
        stmt = stmt.where(Execution.correlation_id == correlation_id)
    if run_id:
        stmt = stmt.where(Execution.run_id == run_id)
    return page(
        session, stmt, created_at=Execution.created_at, ident=Execution.id, limit=limit, cursor=cursor
    )


def queued_candidates(session: Session, *, limit: int = 500) -> list[Any]:
    """QUEUED executions, oldest first: the reconciler decides which were silent too long.

    Only the columns that decision reads: this runs every second, and snapshots can be large.
    """
    return list(
        session.execute(
            select(
                Execution.id,
                Execution.priority,
                Execution.published_at,
                Execution.queued_at,
                Execution.created_at,
                Execution.publish_count,
            )
            # Suite executions are never published: only their members run on workers.
            .where(Execution.status == Status.QUEUED.value, Execution.test_case_id.is_not(None))
            .order_by(Execution.queued_at)
            .limit(limit)
        )
    )


def mark_republished(session: Session, ids: list[uuid.UUID]) -> None:
    if ids:
        session.execute(
            update(Execution)
            .where(Execution.id.in_(ids), Execution.status == Status.QUEUED.value)
            .values(published_at=db_now(session), publish_count=Execution.publish_count + 1)
        )

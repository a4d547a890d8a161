"""Data access for executions: create, claim, lease, steps, finish, queries."""

from __future__ import annotations

import enum
import functools
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Integer, bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from anvil.errors import InvalidInput, InvalidTransition, NotFound
from anvil.settings import get_settings
from db import events
from db.enums import Priority, TriggerKind
from db.events import EXECUTIONS
from db.models import Execution, ExecutionTransition, StepTrace, TestCase
from db.pagination import page
from db.session import built_once, clock, clock_params, db_now
from db.states import FINISHED, Status
from db.transitions import record_initial, transition
from db.types import utcnow

STEPS = StepTrace.__table__
INSERT_STEP = insert(STEPS)


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


class Claimed(NamedTuple):
    attempt: int
    snapshot: dict[str, Any]
    params: dict[str, Any]


def claim_run(session: Session, execution_id: uuid.UUID, *, worker: str, lease_s: float) -> Claimed | None:
    """QUEUED -> RUNNING with a new attempt (the fencing token) and a lease; None if lost.

    Returns what the worker needs to run it, read back by the same UPDATE.
    """
    dialect = session.get_bind().dialect.name
    values, where = _claim_shape(dialect)
    c = EXECUTIONS.c
    try:
        done = transition(
            session,
            execution_id,
            Status.RUNNING,
            from_=Status.QUEUED,
            actor=f"worker:{worker}",
            reason="claimed",
            values=values,
            where=where,
            returning=(c.case_snapshot, c.params),
            params={"p_worker": worker, **clock_params(dialect, p_lease=lease_s)},
            reuse="claim",
        )
    except (InvalidTransition, NotFound):
        return None
    snapshot, params = done.returned
    return Claimed(done.attempt, snapshot, params)


@functools.cache
def _claim_shape(dialect: str) -> tuple[dict[str, Any], list[Any]]:
    c = EXECUTIONS.c
    values = {
        "attempt": c.attempt + 1,
        "lease_expires_at": clock(dialect, "p_lease"),
        "worker": bindparam("p_worker"),
        "started_at": clock(dialect),
    }
    # An expired execution is not started; the scheduler tick marks it SKIPPED.
    return values, [or_(c.expires_at.is_(None), c.expires_at > clock(dialect))]


def claim(session: Session, execution_id: uuid.UUID, *, worker: str, lease_s: float) -> int | None:
    """Like claim_run, returning only the new attempt number."""
    claimed = claim_run(session, execution_id, worker=worker, lease_s=lease_s)
    return claimed.attempt if claimed else None


class Lease(enum.Enum):
    """What a running attempt learns when it renews its lease."""

    HELD = "held"
    CANCEL_REQUESTED = "cancel requested"  # held, but someone asked it to stop
    LOST = "lost"  # the attempt no longer owns the execution: it must stop and write nothing


def renew_lease(session: Session, execution_id: uuid.UUID, *, attempt: int, lease_s: float) -> bool:
    """Extend the lease of a running attempt. False means the attempt no longer owns the row."""
    return hold(session, execution_id, attempt=attempt, lease_s=lease_s) is not Lease.LOST


def summarize(statuses: list[str]) -> dict[str, Any]:
    """Counts of step results by status, plus the total."""
    counts = Counter(statuses)
    return {"total": len(statuses), **dict(sorted(counts.items()))}


@dataclass
class StepRecord:
    seq: int
    name: str
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    output: str | None = None
    output_truncated: bool = False
    error: str | None = None
    keyword: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def write_step(
    session: Session, execution_id: uuid.UUID, *, attempt: int, step: StepRecord, lease_s: float
) -> bool:
    """Insert one step row for this attempt, fenced. False (nothing written) when it lost the row."""
    return hold(session, execution_id, attempt=attempt, lease_s=lease_s, steps=[step]) is not Lease.LOST


def hold(
    session: Session,
    execution_id: uuid.UUID,
    *,
    attempt: int,
    lease_s: float,
    steps: Sequence[StepRecord] = (),
) -> Lease:
    """Renew a running attempt's lease and insert its finished ``steps``, fenced.

    The lease UPDATE comes first: it locks the row (fencing against a concurrent re-queue), checks
    the attempt, numbers the steps' events and reads whether a cancel was requested. When the
    attempt lost the execution nothing is written.
    """
    dialect = session.get_bind().dialect.name
    owned = session.execute(
        built_once(("hold", dialect), lambda: _hold_statement(dialect)),
        {"p_id": execution_id, "p_attempt": attempt, "p_steps": len(steps)}
        | clock_params(dialect, p_lease=lease_s),
    ).one_or_none()
    if owned is None:
        return Lease.LOST
    root_id, last_seq, cancel_requested_at = owned
    if steps:
        session.execute(INSERT_STEP, [_step_row(execution_id, attempt, step) for step in steps])
        events.append_many(
            session,
            execution_id=execution_id,
            root_id=root_id,
            last_seq=last_seq if root_id == execution_id else None,
            type_="step",
            datas=[step_event(execution_id, attempt, step) for step in steps],
        )
    return Lease.HELD if cancel_requested_at is None else Lease.CANCEL_REQUESTED


def _hold_statement(dialect: str) -> Any:
    c = EXECUTIONS.c
    steps = bindparam("p_steps", type_=Integer())
    return (
        update(EXECUTIONS)
        .where(
            c.id == bindparam("p_id"), c.attempt == bindparam("p_attempt"), c.status == Status.RUNNING.value
        )
        .values(
            lease_expires_at=clock(dialect, "p_lease"),
            event_seq=case((c.root_execution_id == c.id, c.event_seq + steps), else_=c.event_seq),
        )
        .returning(c.root_execution_id, c.event_seq, c.cancel_requested_at)
    )


def _step_row(execution_id: uuid.UUID, attempt: int, step: StepRecord) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "attempt": attempt,
        "seq": step.seq,
        "name": _text(step.name),
        "keyword": step.keyword,
        "status": step.status,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration_s": step.duration_s,
        "output": _text(step.output),
        "output_truncated": step.output_truncated,
        "error": _text(step.error),
        "details": step.details,
        "recorded_at": utcnow(),
    }


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; a test's output can."""
    return value.replace("\x00", "") if value else value


def step_event(execution_id: uuid.UUID, attempt: int, step: StepRecord | Any) -> dict[str, Any]:
    """The live event for a step result (output left out: fetch it from the steps endpoint)."""
    return {
        "execution_id": str(execution_id),
        "attempt": attempt,
        "seq": step.seq,
        "name": step.name,
        "keyword": step.keyword,
        "status": str(step.status),
        "duration_s": step.duration_s,
        "error": step.error,
    }


def finish(
    session: Session,
    execution_id: uuid.UUID,
    *,
    attempt: int,
    status: Status,
    actor: str,
    summary: dict[str, Any],
    error: str | None = None,
    steps: Sequence[StepRecord] = (),
) -> bool:
    """RUNNING -> this attempt's outcome (a final status, or PAUSED for manual tests), with the
    attempt's last ``steps`` not written yet, in the caller's transaction.

    False (nothing written) when the attempt no longer owns the execution.
    """
    if steps and hold(session, execution_id, attempt=attempt, lease_s=0, steps=steps) is Lease.LOST:
        return False
    dialect = session.get_bind().dialect.name
    offsets = {"p_manual": get_settings().manual_timeout_s} if status is Status.PAUSED else {}
    try:
        transition(
            session,
            execution_id,
            status,
            from_=Status.RUNNING,
            attempt=attempt,
            actor=actor,
            reason=error,
            values=_finish_values(dialect, status),
            params={"p_summary": summary, "p_error": error, **clock_params(dialect, **offsets)},
            reuse="finish",
        )
    except (InvalidTransition, NotFound):
        return False
    return True


@functools.cache
def _finish_values(dialect: str, status: Status) -> dict[str, Any]:
    c = EXECUTIONS.c
    return {
        # PAUSED (waiting for a person) has not finished yet.
        "finished_at": clock(dialect) if status in FINISHED else None,
        # PAUSED waits for a person; the lease becomes their deadline (then TIMEOUT).
        "lease_expires_at": clock(dialect, "p_manual") if status is Status.PAUSED else None,
        "summary": bindparam("p_summary", type_=c.summary.type),
        "error": bindparam("p_error", type_=c.error.type),
        # Passing on a retry after a failed attempt of the same test: flaky.
        **({"flaky": c.retry_index > 0} if status is Status.PASSED else {}),
    }


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

"""Data access for executions: the one insert path, find, list. What a running attempt writes:
db/attempts.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.states import Status
from anvil.errors import InvalidInput, NotFound
from db import events, observed
from db.events import EXECUTIONS
from db.models import Execution, ExecutionTransition, StepTrace, TestCase
from db.pagination import page
from db.sql import db_now
from db.types import utcnow

TRANSITIONS = cast(Table, ExecutionTransition.__table__)
INSERT_EXECUTIONS = insert(EXECUTIONS)
INSERT_TRANSITIONS = insert(TRANSITIONS).returning(TRANSITIONS.c.id, sort_by_parameter_order=True)


def case_snapshot(case: TestCase) -> dict[str, Any]:
    return {
        "name": case.name,
        "kind": case.kind,
        "spec": case.spec,
        "timeout_s": case.timeout_s,
        "version": case.version,
        "tags": list(case.tags or []),
    }


@dataclass(frozen=True)
class Source:
    """What was tested, as the submission said: a commit, a branch, a free environment label.

    Members of a suite, retries and shards inherit it; every test result carries it.
    """

    revision: str | None = None
    branch: str | None = None
    environment: str | None = None

    @classmethod
    def of(cls, execution: Execution) -> Source:
        return cls(execution.revision, execution.branch, execution.environment)

    def columns(self) -> dict[str, str | None]:
        return {"revision": self.revision, "branch": self.branch, "environment": self.environment}


@dataclass(frozen=True)
class NewExecution:
    """One execution to insert: what it runs, who asked, and where it sits in its tree.

    ``root_execution_id`` None: the execution is the root of a tree of its own. A member of a
    tree (a suite's child, a retry) names its root, which may be inserted in the same call
    (before it in the list) or exist already.
    """

    snapshot: dict[str, Any]
    priority: Priority
    trigger_kind: TriggerKind
    requested_by: uuid.UUID | None
    test_case_id: uuid.UUID | None = None
    test_suite_id: uuid.UUID | None = None
    status: Status = Status.QUEUED
    run_at: datetime | None = None  # SCHEDULED: when it is due
    params: dict[str, Any] = field(default_factory=dict)
    retry_policy: dict[str, Any] = field(default_factory=dict)
    retry_index: int = 0
    run_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    parent_execution_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    root_execution_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    schedule_id: uuid.UUID | None = None
    slot_at: datetime | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    source: Source = field(default_factory=Source)
    selection: dict[str, Any] | None = None  # anvil/domain/selection.py
    reason: str = "submitted"  # of its first transition
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def insert_executions(
    session: Session,
    items: Sequence[NewExecution],
    *,
    actor: str,
    max_attempts: int,
    now: datetime | None = None,
) -> list[Execution]:
    """Insert executions with their first transition and its live event, in three bulk statements;
    the caller commits, then publishes the QUEUED ones. Every way an execution is created (a
    submission, a batch, a suite's expansion, a retry, a schedule's slot) comes through here.

    ``now``: the database clock when the caller read it already (the scheduler does: its host's
    clock may be skewed, and the reconciler measures a message's silence from ``published_at``).

    Returns the executions (not attached to the session), in the items' order.
    """
    if not items:
        return []
    # One Python timestamp for the inserts: a SQL now() would cost a read-back on the hot path.
    now = now or utcnow()
    seqs, stream_lengths = _number_events(session, items)
    rows = [
        _row(item, now=now, index=index, max_attempts=max_attempts, event_seq=stream_lengths.get(item.id, 0))
        for index, item in enumerate(items)
    ]
    session.execute(INSERT_EXECUTIONS, rows)
    transition_ids = session.scalars(
        INSERT_TRANSITIONS,
        [
            {"execution_id": item.id, "attempt": 0, "from_status": None, "to_status": item.status.value,
             "at": now, "actor": actor, "reason": item.reason}
            for item in items
        ],
    ).all()  # fmt: skip
    session.execute(
        events.INSERT_EVENT,
        [
            {
                "root_execution_id": item.root_execution_id or item.id,
                "seq": seq,
                "execution_id": item.id,
                "type": "transition",
                "at": now,
                "data": events.transition_data(
                    item.id, src=None, to=item.status.value, actor=actor, reason=item.reason, at=now,
                    attempt=0, transition_id=transition_id,
                ),
            }
            for item, seq, transition_id in zip(items, seqs, transition_ids, strict=True)
        ],
    )  # fmt: skip
    for root_id in {item.root_execution_id for item in items} - {item.id for item in items} - {None}:
        events.note_written(session, root_id)  # type: ignore[arg-type]  # an existing stream's listeners
    observed.note_created(
        session,
        (
            observed.Created(str(item.snapshot.get("kind", "")), item.status.value, item.trigger_kind.value)
            for item in items
        ),
    )
    return [Execution(**row) for row in rows]


def _number_events(session: Session, items: Sequence[NewExecution]) -> tuple[list[int], dict[uuid.UUID, int]]:
    """Each item's event number in its root's stream, and how long the new roots' streams are.

    A new root's stream starts here (its own event is number 1, then its members' in order);
    an existing root's next numbers are taken under its row lock (db/events.next_seq).
    """
    new = {item.id for item in items}
    lengths: dict[uuid.UUID, int] = {}
    wanted: dict[uuid.UUID, int] = {}
    for item in items:
        root = item.root_execution_id or item.id
        if root in new:
            assert root in lengths or root == item.id, "a new root must come before its members"
            lengths[root] = lengths.get(root, 0) + 1
        else:
            wanted[root] = wanted.get(root, 0) + 1
    # The last number each existing root hands out; a root's numbers go to its items in order.
    next_free = {
        root: events.next_seq(session, root, count) - count + 1 for root, count in sorted(wanted.items())
    }
    counters = dict.fromkeys(lengths, 0)
    seqs: list[int] = []
    for item in items:
        root = item.root_execution_id or item.id
        if root in counters:
            counters[root] += 1
            seqs.append(counters[root])
        else:
            seqs.append(next_free[root])
            next_free[root] += 1
    return seqs, lengths


def _row(
    item: NewExecution, *, now: datetime, index: int, max_attempts: int, event_seq: int
) -> dict[str, Any]:
    queued = item.status is Status.QUEUED
    return {
        **_UNSET,
        "id": item.id,
        "test_case_id": item.test_case_id,
        "test_suite_id": item.test_suite_id,
        "case_snapshot": item.snapshot,
        "status": item.status.value,
        "priority": item.priority.value,
        "max_attempts": max_attempts,
        "trigger_kind": item.trigger_kind.value,
        "correlation_id": item.correlation_id or item.id,
        "root_execution_id": item.root_execution_id or item.id,
        # A new root's counter starts at the events inserted with it; a member's stays 0.
        "event_seq": event_seq,
        "parent_execution_id": item.parent_execution_id,
        "run_id": item.run_id,
        "requested_by": item.requested_by,
        "idempotency_key": item.idempotency_key,
        "request_hash": item.request_hash,
        "params": item.params,
        # Distinct and increasing: a batch or a suite's members list in their order.
        "created_at": now + timedelta(microseconds=index),
        "queued_at": now if queued else None,
        # Published right after the commit; the reconciler measures silence from here.
        "published_at": now if queued else None,
        "publish_count": 1 if queued else 0,
        "run_at": item.run_at,
        "retry_policy": item.retry_policy,
        "retry_index": item.retry_index,
        "expires_at": item.expires_at,
        "schedule_id": item.schedule_id,
        "slot_at": item.slot_at,
        "summary": item.summary,
        **item.source.columns(),
        "selection": item.selection,
    }


# Every other column of a new execution, as its model defaults would set it.
_UNSET: dict[str, Any] = {
    "attempt": 0,
    "started_at": None,
    "finished_at": None,
    "lease_expires_at": None,
    "worker": None,
    "error": None,
    "flaky": False,
    "cancel_requested_at": None,
    "assigned_to": None,
    "assigned_at": None,
}


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


def step_outline(session: Session, execution_ids: list[uuid.UUID]) -> list[tuple[int, str, str]]:
    """(id, status, name) of the steps of each execution's latest attempt that recorded any, execution
    by execution in the order given, then by seq: what a page of a long run counts and pages through
    before it loads the few steps it shows whole."""
    if not execution_ids:
        return []
    latest = (
        select(StepTrace.execution_id, func.max(StepTrace.attempt).label("attempt"))
        .where(StepTrace.execution_id.in_(execution_ids))
        .group_by(StepTrace.execution_id)
        .subquery()
    )
    rows = list(
        session.execute(
            select(
                StepTrace.id, StepTrace.status, StepTrace.name, StepTrace.execution_id, StepTrace.seq
            ).join(
                latest,
                (StepTrace.execution_id == latest.c.execution_id) & (StepTrace.attempt == latest.c.attempt),
            )
        ).all()
    )
    order = {execution_id: n for n, execution_id in enumerate(execution_ids)}
    rows.sort(key=lambda r: (order[r.execution_id], r.seq))
    return [(r.id, r.status, r.name) for r in rows]


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
    revision: str | None = None,
    branch: str | None = None,
    environment: str | None = None,
    requested_by: uuid.UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> tuple[list[Execution], str | None]:
    """Newest first, keyset-paginated on (created_at, id). Returns the page and the next cursor.

    ``created_from`` is inclusive, ``created_to`` exclusive."""
    stmt = select(Execution)
    if requested_by:
        stmt = stmt.where(Execution.requested_by == requested_by)
    if created_from:
        stmt = stmt.where(Execution.created_at >= created_from)
    if created_to:
        stmt = stmt.where(Execution.created_at < created_to)
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
    for column, value in ((Execution.revision, revision), (Execution.branch, branch),
                          (Execution.environment, environment)):  # fmt: skip
        if value:
            stmt = stmt.where(column == value)
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


def mark_republished(session: Session, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Count one more publish of each of ``ids`` still QUEUED; returns those (claimed ones are left out)."""
    if not ids:
        return []
    return list(
        session.scalars(
            update(Execution)
            .where(Execution.id.in_(ids), Execution.status == Status.QUEUED.value)
            .values(published_at=db_now(session), publish_count=Execution.publish_count + 1)
            .returning(Execution.id)
        )
    )

"""Suite executions: expansion into children in one transaction, and settling the suite.

Settling runs just before a transaction commits (db/reactions.py), once the whole change is in
it — a child's final status and any retry scheduled for it. The suite row is locked while
its children are counted, so when the last two children finish at once on two workers, exactly
one of those transactions sees none left and finishes the suite.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.policy import resolve_retry_policy
from anvil.domain.states import FINISHED, Status
from anvil.errors import InvalidInput, InvalidTransition
from db.aggregation import Counts, any_failure, progress, started, suite_result
from db.executions import case_snapshot
from db.models import Execution, ExecutionEvent, ExecutionTransition, TestSuite
from db.reactions import forget_suite
from db.suites import resolve_members
from db.transitions import record_initial, transition
from db.types import utcnow

SUITE = "suite"
NOT_STARTED = (Status.PENDING.value, Status.SCHEDULED.value, Status.QUEUED.value)


def create_suite_execution(
    session: Session,
    *,
    suite: TestSuite,
    priority: Priority,
    trigger_kind: TriggerKind,
    requested_by: uuid.UUID | None,
    actor: str,
    run_id: str | None = None,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    max_attempts: int = 3,
    parent_execution_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
    retry_policy: dict[str, Any] | None = None,
    expires_at: Any = None,
    schedule_id: uuid.UUID | None = None,
    slot_at: Any = None,
) -> tuple[Execution, list[tuple[uuid.UUID, str]]]:
    """Insert the suite execution and one QUEUED child per member (bulk). Returns what to publish.

    ``retry_policy`` is the submission's layer: each member runs with its case's policy, overridden
    by the suite's, overridden by this. ``expires_at`` applies to every member (not started by
    then: SKIPPED).
    With a parent, the suite joins the parent's ``correlation_id``, but it stays the root of its
    own tree: its members are counted (and their events numbered) under it.
    """
    members = resolve_members(session, suite)
    if not members:
        raise InvalidInput(f"suite {suite.name!r} has no live members to run", field="body.test_suite_id")
    suite_id, now = uuid.uuid4(), utcnow()
    correlation_id = correlation_id or suite_id
    execution = Execution(
        id=suite_id,
        test_suite_id=suite.id,
        root_execution_id=suite_id,
        event_seq=1 + len(members),  # its own QUEUED event, then one per child
        case_snapshot={
            "name": suite.name,
            "kind": SUITE,
            "fail_fast": suite.fail_fast,
            "version": suite.version,
            "total": len(members),
        },
        status=Status.QUEUED.value,
        priority=priority.value,
        max_attempts=max_attempts,
        trigger_kind=trigger_kind.value,
        correlation_id=correlation_id,
        parent_execution_id=parent_execution_id,
        run_id=run_id,
        requested_by=requested_by,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        params=params or {},
        created_at=now,
        queued_at=now,
        summary=progress({Status.QUEUED.value: len(members)}),
        # What a member without a case policy of its own runs with (members store their own).
        retry_policy=resolve_retry_policy(suite.retry_policy, retry_policy).as_dict(),
        expires_at=expires_at,
        schedule_id=schedule_id,
        slot_at=slot_at,
    )
    session.add(execution)
    session.flush()
    record_initial(session, suite_id, suite_id, Status.QUEUED, seq=1, actor=actor, reason="submitted")

    child_ids = [uuid.uuid4() for _ in members]
    children = [
        {
            "id": child_id,
            "test_case_id": case.id,
            "test_suite_id": suite.id,
            "root_execution_id": suite_id,
            "event_seq": 0,
            "case_snapshot": case_snapshot(case),
            "status": Status.QUEUED.value,
            "priority": priority.value,
            "attempt": 0,
            "max_attempts": max_attempts,
            "trigger_kind": TriggerKind.CHILD.value,
            "correlation_id": correlation_id,
            "parent_execution_id": suite_id,
            "run_id": run_id,
            "requested_by": requested_by,
            "params": params or {},
            # Distinct, increasing: members list in the suite's order wherever creation order is used.
            "created_at": now + timedelta(microseconds=position + 1),
            "queued_at": now,
            "published_at": now,
            "publish_count": 1,
            "summary": {},
            # Its case's policy, overridden by the suite's, overridden by the submission's.
            "retry_policy": resolve_retry_policy(
                case.retry_policy, suite.retry_policy, retry_policy
            ).as_dict(),
            "expires_at": expires_at,
        }
        for position, (child_id, case) in enumerate(zip(child_ids, members, strict=True))
    ]
    session.execute(insert(Execution), children)
    reason = f"member of suite {suite.name}"
    rows = (
        session.execute(
            insert(ExecutionTransition).returning(
                ExecutionTransition.execution_id, ExecutionTransition.id, sort_by_parameter_order=True
            ),
            [
                {"execution_id": ident, "attempt": 0, "from_status": None, "to_status": Status.QUEUED.value,
                 "actor": actor, "reason": reason, "at": now}
                for ident in child_ids
            ],
        ).tuples()
    )  # fmt: skip
    transition_ids = {execution_id: transition_id for execution_id, transition_id in rows}
    session.execute(
        insert(ExecutionEvent),
        [
            {
                "root_execution_id": suite_id,
                "seq": 2 + i,
                "execution_id": ident,
                "type": "transition",
                "at": now,
                "data": {"execution_id": str(ident), "transition_id": transition_ids[ident],
                         "attempt": 0, "from": None, "to": "QUEUED", "actor": actor, "reason": reason,
                         "at": now.isoformat()},
            }
            for i, ident in enumerate(child_ids)
        ],
    )  # fmt: skip
    return execution, [(ident, priority.value) for ident in child_ids]


def settle(session: Session, suite_id: uuid.UUID, *, members_finished: bool = True) -> Status | None:
    """Bring a suite execution up to date with its members; returns its final status once finished."""
    suite = session.execute(
        select(Execution.status, Execution.case_snapshot).where(Execution.id == suite_id).with_for_update()
    ).one_or_none()
    if suite is None or suite.case_snapshot.get("kind") != SUITE or Status(suite.status) in FINISHED:
        return None
    status = Status(suite.status)
    if status is Status.RUNNING and not members_finished:
        return None  # a member started: nothing to count
    counts = _member_counts(session, suite_id)
    if suite.case_snapshot.get("fail_fast") and any_failure(counts):
        counts = _cancel_not_started(session, suite_id)
    result = suite_result(counts)
    values: dict[str, Any] = {"summary": progress(counts)}
    if status is Status.QUEUED and (started(counts) or result is not None):
        transition(
            session,
            suite_id,
            Status.RUNNING,
            from_=Status.QUEUED,
            actor="suite",
            reason="first member started",
            values={"started_at": utcnow()},
        )
    if result is None:
        session.execute(update(Execution).where(Execution.id == suite_id).values(**values))
        return None
    total = sum(counts.values())
    ok = counts.get(Status.PASSED.value, 0) + counts.get(Status.SKIPPED.value, 0)
    reason = f"{ok} of {total} members passed or skipped"
    transition(
        session,
        suite_id,
        result,
        from_=Status.RUNNING,
        actor="suite",
        reason=reason,
        values={**values, "finished_at": utcnow(), "error": None if result is Status.PASSED else reason},
    )
    return result  # fmt: skip


def _cancel_not_started(session: Session, suite_id: uuid.UUID) -> Counts:
    """Cancel members that have not started; returns the member counts afterwards.

    SKIP LOCKED: a member a worker is claiming right now has started; locking it could deadlock.
    """
    waiting = session.scalars(
        select(Execution.id)
        .where(Execution.root_execution_id == suite_id, Execution.status.in_(NOT_STARTED))
        .with_for_update(skip_locked=True)
    ).all()
    for child_id in waiting:
        try:
            transition(
                session,
                child_id,
                Status.CANCELLED,
                from_=[Status(s) for s in NOT_STARTED],
                actor="suite",
                reason="fail_fast: a member failed",
            )
        except InvalidTransition:
            pass
    # Our own cancellations marked the suite dirty again; the counts below already include them.
    forget_suite(session, suite_id)
    return _member_counts(session, suite_id)


def _member_counts(session: Session, suite_id: uuid.UUID) -> Counts:
    """Members' last attempts by status: a RETRYING execution is superseded by its retry.

    Members are the suite's children and their retries (retry_index > 0); other executions that
    hang in the suite's tree (an agent's or a person's follow-up run) do not change its result.
    """
    rows = session.execute(
        select(Execution.status, func.count())
        .where(
            Execution.root_execution_id == suite_id,
            Execution.id != suite_id,
            Execution.status != Status.RETRYING.value,
            or_(Execution.trigger_kind == TriggerKind.CHILD.value, Execution.retry_index > 0),
        )
        .group_by(Execution.status)
    ).all()
    return {status: n for status, n in rows}

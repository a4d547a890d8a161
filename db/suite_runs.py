"""Suite executions: expansion into children in one transaction, and settling the suite.

Settling runs just before a transaction commits (db/reactions.py), once the whole change is in
it — a child's final status and any retry scheduled for it. The suite row is locked while
its children are counted, so when the last two children finish at once on two workers, exactly
one of those transactions sees none left and finishes the suite.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.policy import resolve_retry_policy
from anvil.domain.shards import stops_at_first_failure
from anvil.domain.states import FINISHED, Status
from anvil.errors import InvalidInput, InvalidTransition
from db.aggregation import Counts, any_failure, progress, started, suite_result
from db.changes import forget_suite
from db.executions import NewExecution, Source, case_snapshot, insert_executions
from db.gates import judge_run
from db.models import Execution, TestCase, TestSuite
from db.shard_runs import latest_shards, parent_summary, plan_with_times
from db.shard_tests import untaken
from db.suites import resolve_members
from db.transitions import transition
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
    source: Source | None = None,
    members: Sequence[TestCase] | None = None,
    selection: dict[str, Any] | None = None,
    member_selections: Mapping[uuid.UUID, dict[str, Any]] | None = None,
    now: datetime | None = None,
    gate: dict[str, Any] | None = None,
) -> tuple[Execution, list[tuple[uuid.UUID, str]]]:
    """Insert the suite execution and one QUEUED child per member (bulk). Returns what to publish.

    ``retry_policy`` is the submission's layer: each member runs with its case's policy, overridden
    by the suite's, overridden by this. ``expires_at`` applies to every member (not started by
    then: SKIPPED).
    With a selection (api/selection.py), ``members`` are the cases it selected, ``selection`` what the
    suite execution records and ``member_selections`` each member's own (anvil/domain/selection.py).
    ``gate``: the submission's quality gate, replacing the suite's (db/gates.py judges it at the end).
    With a parent, the suite joins the parent's ``correlation_id``, but it stays the root of its
    own tree: its members are counted (and their events numbered) under it.
    """
    members = resolve_members(session, suite) if members is None else members
    if not members:
        raise InvalidInput(f"suite {suite.name!r} has no live members to run", field="body.test_suite_id")
    common: dict[str, Any] = {
        "priority": priority,
        "requested_by": requested_by,
        "run_id": run_id,
        "params": params or {},
        "expires_at": expires_at,
        "test_suite_id": suite.id,
        "source": source or Source(),
    }
    root = NewExecution(
        snapshot={
            "name": suite.name,
            "kind": SUITE,
            "fail_fast": suite.fail_fast,
            "version": suite.version,
            "total": len(members),
            "gate": gate or suite.gate,
        },
        trigger_kind=trigger_kind,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        parent_execution_id=parent_execution_id,
        correlation_id=correlation_id,
        summary=progress({Status.QUEUED.value: len(members)}),
        # What a member without a case policy of its own runs with (members store their own).
        retry_policy=resolve_retry_policy(suite.retry_policy, retry_policy).as_dict(),
        schedule_id=schedule_id,
        slot_at=slot_at,
        selection=selection,
        **common,
    )
    children = [
        NewExecution(
            snapshot=case_snapshot(case),
            test_case_id=case.id,
            trigger_kind=TriggerKind.CHILD,
            correlation_id=correlation_id or root.id,
            parent_execution_id=root.id,
            root_execution_id=root.id,
            # Its case's policy, overridden by the suite's, overridden by the submission's.
            retry_policy=resolve_retry_policy(case.retry_policy, suite.retry_policy, retry_policy).as_dict(),
            reason=f"member of suite {suite.name}",
            selection=(member_selections or {}).get(case.id),
            **common,
        )
        for case in members
    ]
    execution, *_ = insert_executions(
        session, [root, *children], actor=actor, max_attempts=max_attempts, now=now
    )
    return execution, [(child.id, priority.value) for child in children]


def settle(session: Session, suite_id: uuid.UUID, *, members_finished: bool = True) -> Status | None:
    """Bring a suite execution up to date with its members; returns its final status once finished."""
    suite = session.execute(
        select(Execution.status, Execution.case_snapshot, Execution.shard_plan)
        .where(Execution.id == suite_id)
        .with_for_update()
    ).one_or_none()
    if suite is None or Status(suite.status) in FINISHED:
        return None
    # A suite, or a case execution split into shards (db/shard_runs.py): both finish with their members.
    sharded = suite.shard_plan is not None
    if suite.case_snapshot.get("kind") != SUITE and not sharded:
        return None
    status = Status(suite.status)
    if status is Status.RUNNING and not members_finished:
        return None  # a member started: nothing to count
    counts = _member_counts(session, suite_id)
    fail_fast = (
        stops_at_first_failure(suite.case_snapshot.get("spec") or {})
        if sharded
        else bool(suite.case_snapshot.get("fail_fast"))
    )
    if fail_fast and any_failure(counts):
        counts = _cancel_not_started(session, suite_id, running_too=sharded)
    result = suite_result(counts)
    shards = latest_shards(session, suite_id) if sharded else []
    summary = parent_summary(counts, shards) if sharded else progress(counts)
    values: dict[str, Any] = {"summary": summary}
    if sharded and result is not None:
        values["shard_plan"] = plan_with_times(suite.shard_plan, shards)
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
    reason = f"{ok} of {total} {'shards' if sharded else 'members'} passed or skipped"
    left = untaken(session, suite_id) if sharded and result is Status.PASSED else 0
    if left:
        result, reason = Status.ERROR, f"{left} tests of the plan were never run by any shard"
        values["summary"] = {**summary, "not_run": left}
    transition(
        session,
        suite_id,
        result,
        from_=Status.RUNNING,
        actor="suite",
        reason=reason,
        values={**values, "finished_at": utcnow(), "error": None if result is Status.PASSED else reason},
    )
    judge_run(session, suite_id)  # its quality gate, committed with its result
    return result  # fmt: skip


def _cancel_not_started(session: Session, suite_id: uuid.UUID, *, running_too: bool = False) -> Counts:
    """Cancel members that have not started (``running_too``: and ask the running ones to stop, as
    the shards of a run that stops at its first failure); returns the member counts afterwards.

    SKIP LOCKED: a member a worker is claiming right now has started; locking it could deadlock.
    """
    if running_too:
        session.execute(
            update(Execution)
            .where(
                Execution.root_execution_id == suite_id,
                Execution.status == Status.RUNNING.value,
                Execution.cancel_requested_at.is_(None),
            )
            .values(cancel_requested_at=utcnow())
        )
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
                reason="fail_fast: a shard failed" if running_too else "fail_fast: a member failed",
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
            or_(
                Execution.trigger_kind.in_([TriggerKind.CHILD.value, TriggerKind.SHARD.value]),
                Execution.retry_index > 0,
            ),
        )
        .group_by(Execution.status)
    ).all()
    return {status: n for status, n in rows}

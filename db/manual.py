"""Manual tests: the queue of PAUSED executions, assignment to a tester, and step results.

A tester records steps in order; re-recording is allowed until the execution completes. The step
row holds the latest record, and every record is kept in manual_step_results.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import case, insert, select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, StepStatus
from anvil.domain.quarantine import apply_quarantine, masked_outcome
from anvil.domain.results import StepView, test_key
from anvil.domain.states import Status
from anvil.domain.steps import Outcome, summarize
from anvil.errors import Conflict, Forbidden, InvalidInput
from db import events
from db.attempts import step_event
from db.executions import get_execution
from db.models import Execution, ManualStepResult, StepTrace, User
from db.quarantine import quarantined_keys
from db.sql import db_now, read_db_now
from db.transitions import transition
from db.types import utcnow

RESULTS = (StepStatus.PASSED, StepStatus.FAILED, StepStatus.BLOCKED, StepStatus.SKIPPED)
_PRIORITY_RANK = case({p.value: p.rank for p in Priority}, value=Execution.priority)


def manual_queue(session: Session, *, limit: int) -> list[Execution]:
    """PAUSED manual executions waiting for a tester: highest priority first, then oldest."""
    return list(
        session.scalars(
            select(Execution)
            .where(
                Execution.status == Status.PAUSED.value,
                Execution.case_snapshot["kind"].as_string() == "manual",
            )
            .order_by(_PRIORITY_RANK, Execution.created_at, Execution.id)
            .limit(limit)
        )
    )


def _paused_manual(session: Session, execution_id: uuid.UUID) -> Execution:
    execution = get_execution(session, execution_id)
    if execution.case_snapshot.get("kind") != "manual":
        raise InvalidInput(f"execution {execution_id} is not a manual test", field="id")
    if execution.status != Status.PAUSED.value:
        raise Conflict(
            f"execution {execution_id} is {execution.status}; only PAUSED manual tests take results",
            current_status=execution.status,
        )
    return execution


def assign(session: Session, execution_id: uuid.UUID, *, user: User) -> Execution:
    """Give the execution to ``user``; 409 while another tester has it."""
    _paused_manual(session, execution_id)
    taken = session.execute(
        update(Execution)
        .where(
            Execution.id == execution_id,
            Execution.status == Status.PAUSED.value,
            (Execution.assigned_to.is_(None)) | (Execution.assigned_to == user.id),
        )
        .values(assigned_to=user.id, assigned_at=db_now(session))
        .returning(Execution.id)
    ).scalar_one_or_none()
    if taken is None:
        holder = session.scalar(
            select(User.username)
            .join(Execution, Execution.assigned_to == User.id)
            .where(Execution.id == execution_id)
        )
        raise Conflict(
            f"execution {execution_id} is assigned to {holder or 'someone else'}", assigned_to=holder
        )
    session.flush()
    return get_execution(session, execution_id)


def release(session: Session, execution_id: uuid.UUID, *, user: User, force: bool) -> None:
    """Give the execution back to the queue (its assignee, or an admin with ``force``)."""
    execution = _paused_manual(session, execution_id)
    if execution.assigned_to is None:
        return
    if execution.assigned_to != user.id and not force:
        raise Forbidden(f"execution {execution_id} is assigned to another tester")
    session.execute(
        update(Execution).where(Execution.id == execution_id).values(assigned_to=None, assigned_at=None)
    )


@dataclass
class Recorded:
    step: StepTrace
    completed: Status | None


def record_step(
    session: Session,
    execution_id: uuid.UUID,
    seq: int,
    *,
    user: User,
    status: StepStatus,
    actual: str | None,
    comment: str | None,
) -> Recorded:
    """Record one step's result; when every step has one, the execution completes."""
    # Lock the row: two records of the same execution must not both complete it.
    session.execute(select(Execution.id).where(Execution.id == execution_id).with_for_update())
    execution = _paused_manual(session, execution_id)
    if execution.assigned_to != user.id:
        raise Forbidden("only the tester this execution is assigned to may record its steps; assign it first")
    if status not in RESULTS:
        raise InvalidInput(f"status must be one of {', '.join(RESULTS)}", field="body.status")
    steps = list(
        session.scalars(
            select(StepTrace)
            .where(StepTrace.execution_id == execution_id, StepTrace.attempt == execution.attempt)
            .order_by(StepTrace.seq)
        )
    )
    by_seq = {s.seq: s for s in steps}
    if seq not in by_seq:
        raise InvalidInput(f"step {seq} does not exist; this test has steps 1..{len(steps)}", field="seq")
    missing = [s.seq for s in steps if s.seq < seq and s.status == StepStatus.NOT_RUN]
    if missing:
        raise Conflict(f"record steps in order: step {missing[0]} has no result yet", field="seq")

    step = by_seq[seq]
    step.status = status.value
    step.finished_at = utcnow()
    step.error = comment if status in (StepStatus.FAILED, StepStatus.BLOCKED) else None
    step.details = {**step.details, "actual": actual, "comment": comment, "recorded_by": user.username}
    session.execute(
        insert(ManualStepResult).values(
            execution_id=execution_id,
            attempt=execution.attempt,
            seq=seq,
            status=status.value,
            actual=actual,
            comment=comment,
            recorded_by=user.id,
        )
    )
    events.append(
        session,
        execution_id=execution_id,
        root_id=execution.root_execution_id,
        seq=None,
        type_="step",
        data={**step_event(execution_id, execution.attempt, step), "actual": actual, "comment": comment},
    )
    session.flush()
    results = [s.status for s in steps]
    if StepStatus.NOT_RUN in results:
        return Recorded(step, None)
    return Recorded(step, _complete(session, execution, results, user))


def _complete(session: Session, execution: Execution, results: list[str], user: User) -> Status:
    actor = f"user:{user.username}"
    summary = summarize(results)
    values = {"finished_at": db_now(session), "summary": summary}
    if StepStatus.FAILED in results:
        failed = results.index(StepStatus.FAILED) + 1
        masked = _quarantine(session, execution, Outcome(Status.FAILED, summary, f"step {failed} failed"))
        if masked.status is Status.PASSED:  # the case's one test is quarantined: its failure does not count
            note = masked.summary["quarantine_note"]
            transition(
                session,
                execution.id,
                Status.PASSED,
                from_=Status.PAUSED,
                actor=actor,
                reason=note,
                values={**values, "summary": masked.summary},
            )
            return Status.PASSED
        transition(
            session,
            execution.id,
            Status.FAILED,
            from_=Status.PAUSED,
            actor=actor,
            reason=f"step {failed} failed",
            values={**values, "error": f"step {failed} failed"},
        )
        return Status.FAILED
    if StepStatus.BLOCKED in results:
        # PAUSED -> ERROR is not in the table: resume, then fail the run as blocked.
        transition(
            session, execution.id, Status.RUNNING, from_=Status.PAUSED, actor=actor, reason="evaluating"
        )
        transition(
            session,
            execution.id,
            Status.ERROR,
            from_=Status.RUNNING,
            actor=actor,
            reason="blocked",
            values={**values, "error": "blocked"},
        )
        return Status.ERROR
    transition(
        session,
        execution.id,
        Status.PASSED,
        from_=Status.PAUSED,
        actor=actor,
        reason="all steps passed",
        values=values,
    )
    return Status.PASSED


def _quarantine(session: Session, execution: Execution, outcome: Outcome) -> Outcome:
    """The outcome with quarantine applied (the test of a manual case is the case itself)."""
    if execution.test_case_id is None:
        return outcome
    keys = quarantined_keys(session, execution.test_case_id, now=read_db_now(session))
    key = test_key(execution.case_snapshot, StepView("", outcome.status.value))
    return masked_outcome(outcome, apply_quarantine(outcome.status, [key], keys))

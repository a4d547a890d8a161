"""What a running attempt writes: the claim, its lease, its steps and its outcome.

The claim bumps ``attempt`` (the fencing token); every later write here is conditional on it, so a
stale worker can never write over a newer attempt. The hot-path statements are built once per
process (db.sql.built_once).
"""

from __future__ import annotations

import enum
import functools
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Integer, Table, bindparam, case, insert, or_, update
from sqlalchemy.orm import Session

from anvil.domain.states import FINISHED, Status
from anvil.domain.steps import StepRecord
from anvil.errors import InvalidTransition, NotFound
from anvil.settings import get_settings
from db import events
from db.events import EXECUTIONS
from db.models import StepTrace
from db.sql import built_once, clock, clock_params
from db.transitions import transition
from db.types import utcnow

STEPS = cast(Table, StepTrace.__table__)
INSERT_STEP = insert(STEPS)


class Claimed(NamedTuple):
    attempt: int
    snapshot: dict[str, Any]
    params: dict[str, Any]
    selection: dict[str, Any] | None = None  # the tests to run (anvil/domain/selection.py); None: all


def claim(session: Session, execution_id: uuid.UUID, *, worker: str, lease_s: float) -> Claimed | None:
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
            returning=(c.case_snapshot, c.params, c.selection),
            params={"p_worker": worker, **clock_params(dialect, p_lease=lease_s)},
            reuse="claim",
        )
    except (InvalidTransition, NotFound):
        return None
    snapshot, params, selection = done.returned
    return Claimed(done.attempt, snapshot, params, selection)


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


class Lease(enum.Enum):
    """What a running attempt learns when it renews its lease."""

    HELD = "held"
    CANCEL_REQUESTED = "cancel requested"  # held, but someone asked it to stop
    LOST = "lost"  # the attempt no longer owns the execution: it must stop and write nothing


def renew_lease(
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
    own_numbers = last_seq if root_id == execution_id else None  # a member's come from its root
    _insert_steps(session, execution_id, attempt, root_id, own_numbers, steps)
    return Lease.HELD if cancel_requested_at is None else Lease.CANCEL_REQUESTED


def _insert_steps(
    session: Session,
    execution_id: uuid.UUID,
    attempt: int,
    root_id: uuid.UUID,
    last_seq: int | None,
    steps: Sequence[StepRecord],
) -> None:
    """The step rows and their events, numbered up to ``last_seq`` when the caller took the
    numbers already, else taken from the root's counter here."""
    if not steps:
        return
    session.execute(INSERT_STEP, [_step_row(execution_id, attempt, step) for step in steps])
    events.append_many(
        session,
        execution_id=execution_id,
        root_id=root_id,
        last_seq=last_seq,
        type_="step",
        datas=[step_event(execution_id, attempt, step) for step in steps],
    )


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

    False (nothing written) when the attempt no longer owns the execution. The transition comes
    first (it is the fence) and takes the steps' event numbers, just before its own.
    """
    dialect = session.get_bind().dialect.name
    offsets = {"p_manual": get_settings().manual_timeout_s} if status is Status.PAUSED else {}
    try:
        done = transition(
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
            reserve_events=len(steps),
        )
    except (InvalidTransition, NotFound):
        return False
    _insert_steps(session, execution_id, attempt, done.root_id, done.event_seq - 1, steps)
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

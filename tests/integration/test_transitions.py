"""Every status change writes exactly one transition row, in the same transaction as the change."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.states import Status
from db.attempts import finish
from db.models import Execution, ExecutionTransition
from db.session import new_session
from db.transitions import transition
from tests.helpers import claim_attempt


def seen_from_outside(execution_id: uuid.UUID) -> tuple[str, int]:
    """(status, number of transition rows) as another connection sees them."""
    with new_session() as s:
        status = s.scalar(select(Execution.status).where(Execution.id == execution_id))
        rows = s.scalar(select(func.count()).where(ExecutionTransition.execution_id == execution_id))
        assert status is not None
        return status, rows or 0


class Boom(Exception):
    pass


def test_submission_writes_the_first_transition_row(
    queued: Callable[..., uuid.UUID], session: Session
) -> None:
    execution_id = queued()
    rows = session.execute(
        select(
            ExecutionTransition.from_status, ExecutionTransition.to_status, ExecutionTransition.actor
        ).where(ExecutionTransition.execution_id == execution_id)
    ).all()
    assert [tuple(r) for r in rows] == [(None, "QUEUED", "test")]


def test_each_change_adds_one_row_visible_only_with_the_status_at_commit(
    queued: Callable[..., uuid.UUID], session: Session
) -> None:
    execution_id = queued()
    before, rows = "QUEUED", 1
    for to in (Status.RUNNING, Status.FAILED, Status.RETRYING):
        with session.begin():
            transition(session, execution_id, to, actor="test", reason=f"to {to}")
            # Not committed yet: another connection sees neither the new status nor the new row.
            assert seen_from_outside(execution_id) == (before, rows)
        before, rows = to.value, rows + 1
        assert seen_from_outside(execution_id) == (before, rows)
    rows = session.execute(
        select(ExecutionTransition.from_status, ExecutionTransition.to_status, ExecutionTransition.reason)
        .where(ExecutionTransition.execution_id == execution_id)
        .order_by(ExecutionTransition.id)
    ).all()
    assert [tuple(r) for r in rows] == [
        (None, "QUEUED", "submitted"),
        ("QUEUED", "RUNNING", "to RUNNING"),
        ("RUNNING", "FAILED", "to FAILED"),
        ("FAILED", "RETRYING", "to RETRYING"),
    ]


@pytest.mark.parametrize("to", [Status.RUNNING, Status.CANCELLED, Status.SKIPPED])
def test_a_rolled_back_transaction_keeps_neither_the_status_nor_the_row(
    queued: Callable[..., uuid.UUID], session: Session, to: Status
) -> None:
    execution_id = queued()
    with pytest.raises(Boom), session.begin():
        done = transition(session, execution_id, to, actor="test")
        assert done.from_status is Status.QUEUED and done.to_status is to
        raise Boom
    assert seen_from_outside(execution_id) == ("QUEUED", 1)


def test_claim_and_finish_roll_back_together_with_their_rows(queued: Callable[..., uuid.UUID]) -> None:
    execution_id = queued()
    with pytest.raises(Boom), new_session() as s, s.begin():
        assert claim_attempt(s, execution_id, worker="w", lease_s=30) == 1
        raise Boom
    assert seen_from_outside(execution_id) == ("QUEUED", 1)
    with new_session() as s:
        assert s.scalar(select(Execution.attempt).where(Execution.id == execution_id)) == 0

    with new_session() as s, s.begin():
        assert claim_attempt(s, execution_id, worker="w", lease_s=30) == 1
    with pytest.raises(Boom), new_session() as s, s.begin():
        assert finish(s, execution_id, attempt=1, status=Status.PASSED, actor="w", summary={"total": 0})
        raise Boom
    assert seen_from_outside(execution_id) == ("RUNNING", 2)


def test_multi_source_transition_names_where_it_came_from(
    queued: Callable[..., uuid.UUID], session: Session
) -> None:
    # CANCELLED has several sources; the row must record the actual one.
    execution_id = queued()
    with session.begin():
        transition(session, execution_id, Status.RUNNING, actor="test")
        transition(session, execution_id, Status.PAUSED, actor="test")
        done = transition(session, execution_id, Status.CANCELLED, actor="person", reason="no longer needed")
    assert done.from_status is Status.PAUSED
    last = session.execute(
        select(ExecutionTransition.from_status, ExecutionTransition.to_status)
        .where(ExecutionTransition.execution_id == execution_id)
        .order_by(ExecutionTransition.id.desc())
        .limit(1)
    ).one()
    assert tuple(last) == ("PAUSED", "CANCELLED")

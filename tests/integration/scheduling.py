"""Helpers for the scheduler, retry and cancel tests: play a worker's part in the database, read rows back.

Each helper uses a session of its own (committed), as a worker or the beat process would.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from anvil.domain.states import Status
from anvil.settings import Settings
from db.attempts import finish
from db.models import Execution, ExecutionTransition, TestCase
from db.session import new_session
from scheduler.tick import TickReport, run_tick
from tests.helpers import claim_attempt, generic_spec

T = TypeVar("T")


def case_in_db(
    session: Session,
    *,
    retry_policy: dict[str, Any] | None = None,
    kind: str = "generic",
    timeout_s: int = 60,
    name: str | None = None,
) -> TestCase:
    spec = generic_spec(["true"]) if kind == "generic" else {"steps": [{"action": "look", "expected": "ok"}]}
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(),
            name=name or f"case-{uuid.uuid4().hex[:8]}",
            kind=kind,
            spec=spec,
            tags=[],
            timeout_s=timeout_s,
            retry_policy=retry_policy,
        )
        session.add(case)
    return case


def claim_one(execution_id: uuid.UUID, *, worker: str = "w", lease_s: float = 30.0) -> int:
    with new_session() as s, s.begin():
        attempt = claim_attempt(s, execution_id, worker=worker, lease_s=lease_s)
    assert attempt is not None, f"{execution_id} could not be claimed"
    return attempt


def finish_one(execution_id: uuid.UUID, attempt: int, status: Status, error: str | None = None) -> None:
    with new_session() as s, s.begin():
        assert finish(
            s, execution_id, attempt=attempt, status=status, actor="worker:w", summary={}, error=error
        )


def run_as_worker(execution_id: uuid.UUID, status: Status, error: str | None = None) -> None:
    """Claim the execution and end its attempt with ``status``, as a worker would."""
    finish_one(
        execution_id, claim_one(execution_id), status, error or (None if status is Status.PASSED else "x")
    )


def row(execution_id: uuid.UUID) -> Execution:
    with new_session() as s:
        found = s.get(Execution, execution_id)
        assert found is not None
        s.expunge(found)
        return found


def children_of(execution_id: uuid.UUID) -> list[Execution]:
    with new_session() as s:
        rows = list(
            s.scalars(
                select(Execution)
                .where(Execution.parent_execution_id == execution_id)
                .order_by(Execution.created_at)
            )
        )
        s.expunge_all()
        return rows


def transitions(execution_id: uuid.UUID) -> list[tuple[str | None, str, str | None]]:
    """(from, to, reason) of every status change, oldest first."""
    with new_session() as s:
        return [
            (t.from_status, t.to_status, t.reason)
            for t in s.scalars(
                select(ExecutionTransition)
                .where(ExecutionTransition.execution_id == execution_id)
                .order_by(ExecutionTransition.id)
            )
        ]


def sql(statement: str, **params: Any) -> list[Any]:
    with new_session() as s, s.begin():
        result = s.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def tick(settings: Settings | None = None, *, holder: str = "test-beat") -> TickReport:
    report = run_tick(settings, holder=holder)
    assert report.leader, "the test's beat should hold the tick lease"
    return report


def tick_until(
    done: Callable[[], T],
    *,
    timeout: float = 10.0,
    settings: Settings | None = None,
    holder: str = "test-beat",
) -> T:
    """Run ticks until ``done()`` is truthy; returns its value. Fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        tick(settings, holder=holder)
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not done after {timeout}s of ticks")
        time.sleep(0.05)

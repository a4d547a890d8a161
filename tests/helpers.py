"""Helpers shared by test layers: users and tokens, small case builders."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.steps import StepRecord
from anvil.settings import get_settings
from api.security import issue_token
from db.attempts import Lease, claim, renew_lease
from db.executions import NewExecution, case_snapshot, insert_executions
from db.models import Execution, TestCase
from db.users import create_user


def make_user(session: Session, role: Role = Role.ADMIN, name: str | None = None) -> tuple[Any, str]:
    """Create a user with password "pw"; returns (user, bearer token)."""
    with session.begin():
        user = create_user(
            session, username=name or f"{role.value}-{uuid.uuid4().hex[:6]}", password="pw", role=role
        )
    token = issue_token(get_settings(), user_id=user.id, username=user.username, role=user.role)
    return user, token


def generic_spec(*steps: list[str], workspace: str = "demo") -> dict[str, Any]:
    return {"workspace": workspace, "steps": [{"run": argv} for argv in steps]}


def make_case(session: Session, *, name: str | None = None, spec: dict[str, Any] | None = None) -> TestCase:
    with session.begin():
        case = TestCase(
            id=uuid.uuid4(),
            name=name or f"case-{uuid.uuid4().hex[:6]}",
            kind="generic",
            spec=spec or generic_spec(["true"]),
            tags=[],
            timeout_s=60,
        )
        session.add(case)
    return case


def make_suite_run(session: Session, size: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A QUEUED run of a fresh suite of ``size`` fresh cases, straight in the database: the suite
    execution's id and its members' ids, in order."""
    from anvil.domain.enums import Priority, TriggerKind
    from db.suite_runs import create_suite_execution
    from db.suites import create_suite

    cases = [make_case(session, name=f"m{i}-{uuid.uuid4().hex[:6]}") for i in range(size)]
    with session.begin():
        suite = create_suite(
            session, created_by=None, name=f"s-{uuid.uuid4().hex[:6]}", case_ids=[str(c.id) for c in cases]
        )
    with session.begin():
        run, members = create_suite_execution(
            session,
            suite=suite,
            priority=Priority.NORMAL,
            trigger_kind=TriggerKind.API,
            requested_by=None,
            actor="t",
        )
    return run.id, [member_id for member_id, _ in members]


def create_execution(
    session: Session, *, case: TestCase, actor: str = "test", max_attempts: int = 3, **fields: Any
) -> Execution:
    """One execution of ``case``, through the product's one insert path; ``fields`` as NewExecution's."""
    item = NewExecution(snapshot=case_snapshot(case), test_case_id=case.id, **fields)
    (execution,) = insert_executions(session, [item], actor=actor, max_attempts=max_attempts)
    return execution


def claim_attempt(session: Session, execution_id: uuid.UUID, *, worker: str, lease_s: float) -> int | None:
    """Claim as a worker does; the new attempt number, or None when the claim was lost."""
    claimed = claim(session, execution_id, worker=worker, lease_s=lease_s)
    return claimed.attempt if claimed else None


def lease_held(session: Session, execution_id: uuid.UUID, *, attempt: int, lease_s: float) -> bool:
    """Renew a lease as a worker does; False when the attempt no longer owns the execution."""
    return renew_lease(session, execution_id, attempt=attempt, lease_s=lease_s) is not Lease.LOST


def write_step(
    session: Session, execution_id: uuid.UUID, *, attempt: int, step: StepRecord, lease_s: float
) -> bool:
    """Record one step as a worker does (with a lease renewal); False when nothing was written."""
    return (
        renew_lease(session, execution_id, attempt=attempt, lease_s=lease_s, steps=[step]) is not Lease.LOST
    )

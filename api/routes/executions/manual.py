"""Manual tests: taking an execution, giving it back, and the step results a person records.

The queue of manual executions waiting for a tester is api/routes/manual.py.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response

from anvil.domain.enums import Role
from api.deps import SessionDep, Tester
from api.execution_schemas import ExecutionPublic, StepPublic, StepResultCreate, StepResultPublic
from api.schemas import INT4_MAX
from db import manual
from db.executions import get_execution

router = APIRouter()


@router.post("/{execution_id}/assign", response_model=ExecutionPublic)
def assign(execution_id: uuid.UUID, user: Tester, session: SessionDep) -> ExecutionPublic:
    """Take a PAUSED manual execution; 409 while another tester has it."""
    execution = manual.assign(session, execution_id, user=user)
    session.commit()
    return ExecutionPublic.from_row(execution)


@router.delete("/{execution_id}/assign", status_code=204)
def release(execution_id: uuid.UUID, user: Tester, session: SessionDep) -> Response:
    """Give it back to the queue (the assignee, or an admin)."""
    manual.release(session, execution_id, user=user, force=user.role == Role.ADMIN)
    session.commit()
    return Response(status_code=204)


@router.post("/{execution_id}/steps/{seq}", response_model=StepResultPublic)
def record_step(
    execution_id: uuid.UUID,
    seq: Annotated[int, Path(ge=1, le=INT4_MAX)],
    body: StepResultCreate,
    user: Tester,
    session: SessionDep,
) -> StepResultPublic:
    """Record a step's result (assignee only, in order). The last step's result completes the test."""
    recorded = manual.record_step(
        session, execution_id, seq, user=user, status=body.status, actual=body.actual, comment=body.comment
    )
    session.commit()
    return StepResultPublic(
        step=StepPublic.model_validate(recorded.step),
        execution=ExecutionPublic.from_row(get_execution(session, execution_id)),
    )

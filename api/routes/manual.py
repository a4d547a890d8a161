"""Manual tests: the queue, assignment, and step results recorded by a person."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import StringConstraints

from anvil.domain.enums import Role, StepStatus
from api.deps import SessionDep, SettingsDep, Tester, Viewer
from api.routes.executions import to_public
from api.schemas import INT4_MAX, ExecutionPublic, StepPublic, Strict
from db import manual
from db.executions import get_execution

router = APIRouter(tags=["manual tests"])
Text = Annotated[str, StringConstraints(max_length=20_000)]


class StepResultCreate(Strict):
    status: StepStatus
    actual: Text | None = None
    comment: Text | None = None


class StepResultPublic(Strict):
    step: StepPublic
    execution: ExecutionPublic


@router.get("/api/v1/manual/queue", response_model=list[ExecutionPublic])
def manual_queue(
    _: Viewer, session: SessionDep, settings: SettingsDep, limit: Annotated[int, Query(ge=1)] = 50
) -> list[ExecutionPublic]:
    """Manual executions waiting for a tester: highest priority first, oldest first."""
    return [to_public(e) for e in manual.manual_queue(session, limit=min(limit, settings.page_limit_max))]


@router.post("/api/v1/executions/{execution_id}/assign", response_model=ExecutionPublic)
def assign(execution_id: uuid.UUID, user: Tester, session: SessionDep) -> ExecutionPublic:
    """Take a PAUSED manual execution; 409 while another tester has it."""
    execution = manual.assign(session, execution_id, user=user)
    session.commit()
    return to_public(execution)


@router.delete("/api/v1/executions/{execution_id}/assign", status_code=204)
def release(execution_id: uuid.UUID, user: Tester, session: SessionDep) -> Response:
    """Give it back to the queue (the assignee, or an admin)."""
    manual.release(session, execution_id, user=user, force=user.role == Role.ADMIN)
    session.commit()
    return Response(status_code=204)


@router.post("/api/v1/executions/{execution_id}/steps/{seq}", response_model=StepResultPublic)
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
        execution=to_public(get_execution(session, execution_id)),
    )

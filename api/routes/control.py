"""Acting on an execution after it was submitted: cancel it, or retry it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Response
from pydantic import Field, StrictBool, StringConstraints

from api.deps import SessionDep, Tester
from api.routes.executions import to_public
from api.schemas import ExecutionPublic, Strict
from db.cancel import cancel
from db.retries import retry_now

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])


class CancelRequest(Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None


class RetryRequest(Strict):
    repair: StrictBool = Field(
        default=False, description="a repair (the test or the code was fixed): trigger_kind repair, not retry"
    )


@router.post("/{execution_id}/cancel", response_model=ExecutionPublic)
def cancel_execution(
    execution_id: uuid.UUID,
    user: Tester,
    session: SessionDep,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> ExecutionPublic:
    """Cancel an execution; 409 when it has already finished.

    PENDING, SCHEDULED, QUEUED or PAUSED: CANCELLED now. RUNNING: ``cancel_requested_at`` is set and
    its worker stops the test within about a second, records the remaining steps SKIPPED and ends it
    CANCELLED. A suite execution is CANCELLED with every member that has not finished.
    """
    reason = body.reason if body and body.reason else f"cancelled by {user.username}"
    execution = cancel(session, execution_id, actor=f"user:{user.username}", reason=reason)
    session.commit()
    return to_public(execution)


@router.post("/{execution_id}/retry", status_code=201, response_model=ExecutionPublic)
def retry_execution(
    execution_id: uuid.UUID,
    user: Tester,
    session: SessionDep,
    response: Response,
    body: Annotated[RetryRequest | None, Body()] = None,
) -> ExecutionPublic:
    """Run a finished case execution again as a new child execution (trigger_kind retry or repair).

    The child has the same correlation_id and run_id, is SCHEDULED and due at once (the scheduler
    queues it within a second). A FAILED, ERROR or TIMEOUT execution becomes RETRYING. 409 while it
    is still going, or when it was already retried (retry the latest attempt instead).
    """
    child = retry_now(
        session, execution_id, actor=f"user:{user.username}", repair=body.repair if body else False
    )
    session.commit()
    response.headers["Location"] = f"/api/v1/executions/{child.id}"
    return to_public(child)

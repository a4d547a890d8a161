"""Acting on an execution after it was submitted: cancel it, or retry it.

Who may: a tester acts on the executions they requested (and their retries); maintainers and
admins on any. Executions a schedule started and the members of a suite run (with their retries)
are shared runs: only maintainers and admins act on them one by one (a tester who submitted a
suite cancels the suite execution as a whole).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Response
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.errors import Forbidden
from api.deps import SessionDep, Tester
from api.execution_schemas import CancelRequest, ExecutionPublic, RetryRequest
from db.cancel import cancel
from db.executions import get_execution
from db.models import Execution, User
from db.retries import retry_now

router = APIRouter()


def check_may_act(session: Session, user: User, execution_id: uuid.UUID, *, action: str) -> None:
    """Forbidden unless ``user`` may ``action`` (cancel, retry) the execution; NotFound if it is not there."""
    if Role(user.role).level >= Role.MAINTAINER.level:
        return
    execution = get_execution(session, execution_id)
    root = (
        execution
        if execution.root_execution_id == execution.id
        else session.get(Execution, execution.root_execution_id)
    )
    if root is not None and root.slot_at is not None:
        raise Forbidden(
            f"execution {execution_id} was started by a schedule; only a maintainer or admin may {action} "
            f"scheduled runs ({user.username} is {user.role})"
        )
    if execution.test_case_id is not None and execution.test_suite_id is not None:
        raise Forbidden(
            f"execution {execution_id} is a member of suite execution {execution.root_execution_id}; only "
            f"a maintainer or admin may {action} a suite's members one by one ({user.username} is "
            f"{user.role}; the suite execution can be cancelled as a whole by whoever submitted it)"
        )
    if execution.requested_by != user.id:
        raise Forbidden(
            f"execution {execution_id} was requested by another user; a tester may {action} only their "
            f"own executions (maintainers and admins may {action} any)"
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

    A tester may cancel only the executions they requested; executions started by a schedule and
    single members of a suite run need a maintainer or admin (403 otherwise).
    """
    check_may_act(session, user, execution_id, action="cancel")
    reason = body.reason if body and body.reason else f"cancelled by {user.username}"
    execution = cancel(session, execution_id, actor=f"user:{user.username}", reason=reason)
    session.commit()
    return ExecutionPublic.from_row(execution)


@router.post("/{execution_id}/retry", status_code=201, response_model=ExecutionPublic)
def retry_execution(
    execution_id: uuid.UUID,
    user: Tester,
    session: SessionDep,
    response: Response,
    body: Annotated[RetryRequest | None, Body()] = None,
) -> ExecutionPublic:
    """Run a finished case execution again as a new child execution (trigger_kind retry or repair).

    A plain retry runs the same snapshot of the case as the execution it follows (the spec, timeout
    and version that ran then), even if the case was changed since. ``{"repair": true}`` runs the
    case as it is now: its current spec and version become the child's snapshot (retry after fixing
    the case with PATCH). ``{"failed_only": true}`` runs only the tests that failed or errored in
    it (of a sharded run: in any of its shards). A case that was deleted is not run again: 409.

    The child has the same correlation_id and run_id, is SCHEDULED and due at once (the scheduler
    queues it within a second). A FAILED, ERROR or TIMEOUT execution becomes RETRYING. 409 while it
    is still going, or when it was already retried (retry the latest attempt instead).

    A tester may retry only the executions they requested; executions started by a schedule and
    members of a suite run need a maintainer or admin (403 otherwise).
    """
    check_may_act(session, user, execution_id, action="retry")
    child = retry_now(
        session,
        execution_id,
        actor=f"user:{user.username}",
        repair=body.repair if body else False,
        failed_only=body.failed_only if body else False,
    )
    session.commit()
    response.headers["Location"] = f"/api/v1/executions/{child.id}"
    return ExecutionPublic.from_row(child)

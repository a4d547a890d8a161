from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import BeforeValidator

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.policy import resolve_retry_policy
from anvil.domain.states import Status
from anvil.errors import InvalidInput
from api.deps import SessionDep, SettingsDep, Tester, Viewer
from api.schemas import (
    INT4_MAX,
    CaseExecutionCreate,
    ExecutionPublic,
    Page,
    StepPublic,
    SuiteProgress,
    TransitionPublic,
)
from api.submission import ToPublish, lineage_of, submit_once
from db import executions as ex
from db.batches import BatchItem, create_batch
from db.cases import get_case
from db.models import Execution
from db.session import read_db_now
from db.suite_runs import SUITE

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])

INCLUDES = {"steps", "transitions"}


def _comma_split(value: Any) -> Any:
    """``?status=A,B`` means the same as ``?status=A&status=B``."""
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


CommaList = BeforeValidator(_comma_split)


def to_public(execution: Execution) -> ExecutionPublic:
    duration = None
    if execution.started_at and execution.finished_at:
        duration = round((execution.finished_at - execution.started_at).total_seconds(), 6)
    snapshot = execution.case_snapshot or {}
    return ExecutionPublic(
        id=execution.id,
        test_case_id=execution.test_case_id,
        test_case_name=snapshot.get("name"),
        kind=snapshot.get("kind"),
        status=execution.status,
        priority=execution.priority,
        attempt=execution.attempt,
        max_attempts=execution.max_attempts,
        trigger_kind=execution.trigger_kind,
        correlation_id=execution.correlation_id,
        parent_execution_id=execution.parent_execution_id,
        test_suite_id=execution.test_suite_id,
        root_execution_id=execution.root_execution_id,
        run_id=execution.run_id,
        requested_by=execution.requested_by,
        params=execution.params,
        created_at=execution.created_at,
        queued_at=execution.queued_at,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
        run_at=execution.run_at,
        duration_s=duration,
        worker=execution.worker,
        summary=execution.summary,
        progress=SuiteProgress.model_validate(execution.summary) if snapshot.get("kind") == SUITE else None,
        error=execution.error,
        assigned_to=execution.assigned_to,
        retry_policy=execution.retry_policy or {},
        retry_index=execution.retry_index,
        flaky=execution.flaky,
        expires_at=execution.expires_at,
        cancel_requested_at=execution.cancel_requested_at,
        schedule_id=execution.schedule_id,
        slot_at=execution.slot_at,
    )


@router.post("/case", status_code=201, response_model=ExecutionPublic)
def submit_case(
    body: CaseExecutionCreate,
    user: Tester,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> ExecutionPublic:
    """Run one test case. With an Idempotency-Key, a repeated request returns the first execution.

    ``retry_policy`` overrides the case's policy key by key; ``expires_in_s``: not started by then,
    it ends SKIPPED (expired).
    """
    lineage = lineage_of(session, trigger_kind=body.trigger_kind, parent_id=body.parent_execution_id)

    def create(digest: str) -> tuple[Execution, ToPublish]:
        case = get_case(session, body.test_case_id, field="body.test_case_id")
        submitted = body.retry_policy.layer() if body.retry_policy else None
        expires = read_db_now(session) + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
        item = BatchItem(
            case=case,
            priority=body.priority,
            trigger_kind=body.trigger_kind,
            run_id=body.run_id,
            params=body.params,
            retry_policy=resolve_retry_policy(case.retry_policy, submitted).as_dict(),
            expires_at=expires,
            idempotency_key=idempotency_key,
            parent_execution_id=lineage.parent_execution_id,
            correlation_id=lineage.correlation_id,
            root_execution_id=lineage.root_execution_id,
        )
        (execution,) = create_batch(
            session,
            [item],
            requested_by=user.id,
            actor=f"user:{user.username}",
            max_attempts=settings.max_attempts,
            request_hash=digest,
        )
        return execution, [(execution.id, execution.priority)]

    execution = submit_once(
        session,
        requested_by=user.id,
        idempotency_key=idempotency_key,
        body=body,
        response=response,
        create=create,
    )
    return to_public(execution)


@router.get("", response_model=Page[ExecutionPublic])
def list_executions(
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[list[Status] | None, CommaList, Query(description="repeat or comma-separate")] = None,
    priority: Annotated[
        list[Priority] | None, CommaList, Query(description="repeat or comma-separate")
    ] = None,
    test_case_id: uuid.UUID | None = None,
    test_suite_id: uuid.UUID | None = None,
    parent_execution_id: uuid.UUID | None = None,
    trigger_kind: Annotated[
        list[TriggerKind] | None, CommaList, Query(description="repeat or comma-separate")
    ] = None,
    correlation_id: uuid.UUID | None = None,
    run_id: str | None = None,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> dict[str, object]:
    """Executions newest first; follow next_cursor for older ones. limit is capped by the server."""
    rows, next_cursor = ex.list_executions(
        session,
        limit=min(limit, settings.page_limit_max),
        cursor=cursor,
        status=[s.value for s in status] if status else None,
        priority=[p.value for p in priority] if priority else None,
        test_case_id=test_case_id,
        test_suite_id=test_suite_id,
        parent_execution_id=parent_execution_id,
        trigger_kind=[t.value for t in trigger_kind] if trigger_kind else None,
        correlation_id=correlation_id,
        run_id=run_id,
    )
    return {"items": [to_public(r) for r in rows], "next_cursor": next_cursor}


@router.get("/{execution_id}", response_model=ExecutionPublic, response_model_exclude_none=False)
def get_execution(
    execution_id: uuid.UUID,
    _: Viewer,
    session: SessionDep,
    include: Annotated[str | None, Query(description="comma-separated: steps, transitions")] = None,
) -> ExecutionPublic:
    wanted = {part.strip() for part in include.split(",") if part.strip()} if include else set()
    unknown = wanted - INCLUDES
    if unknown:
        raise InvalidInput(
            f"include accepts {', '.join(sorted(INCLUDES))}; not {', '.join(sorted(unknown))}",
            field="query.include",
        )
    public = to_public(ex.get_execution(session, execution_id))
    if "steps" in wanted:
        public.steps = [StepPublic.model_validate(s) for s in ex.list_steps(session, execution_id)]
    if "transitions" in wanted:
        public.transitions = [
            TransitionPublic.model_validate(t) for t in ex.list_transitions(session, execution_id)
        ]
    return public


@router.get("/{execution_id}/steps", response_model=list[StepPublic])
def get_steps(
    execution_id: uuid.UUID,
    _: Viewer,
    session: SessionDep,
    attempt: Annotated[
        int | None, Query(ge=1, le=INT4_MAX, description="default: the latest attempt")
    ] = None,
) -> object:
    """Step results recorded so far (they appear while the test runs)."""
    ex.get_execution(session, execution_id)
    return ex.list_steps(session, execution_id, attempt=attempt)


@router.get("/{execution_id}/transitions", response_model=list[TransitionPublic])
def get_transitions(execution_id: uuid.UUID, _: Viewer, session: SessionDep) -> object:
    """Every status change of the execution, oldest first."""
    ex.get_execution(session, execution_id)
    return ex.list_transitions(session, execution_id)

"""Reading executions: the list, one execution (optionally with its steps and transitions), its
steps, its transitions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.states import Status
from anvil.errors import InvalidInput
from api.deps import SessionDep, SettingsDep, Viewer
from api.execution_schemas import ExecutionPublic, StepPublic, TransitionPublic
from api.schemas import INT4_MAX
from db import executions as ex
from db.models import Execution, StepTrace
from db.shard_runs import shard_steps

router = APIRouter()

INCLUDES = {"steps", "transitions"}


def _comma_split(value: Any) -> Any:
    """``?status=A,B`` means the same as ``?status=A&status=B``."""
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


CommaList = BeforeValidator(_comma_split)
EVERY = "repeat or comma-separate"


# Registered by the package (api/routes/executions/__init__.py): its path is the prefix itself.
def list_executions(
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[list[Status] | None, CommaList, Query(description=EVERY)] = None,
    priority: Annotated[list[Priority] | None, CommaList, Query(description=EVERY)] = None,
    test_case_id: uuid.UUID | None = None,
    test_suite_id: uuid.UUID | None = None,
    parent_execution_id: uuid.UUID | None = None,
    trigger_kind: Annotated[list[TriggerKind] | None, CommaList, Query(description=EVERY)] = None,
    correlation_id: uuid.UUID | None = None,
    run_id: str | None = None,
    revision: Annotated[str | None, Query(max_length=64)] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    environment: Annotated[str | None, Query(max_length=100)] = None,
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
        revision=revision,
        branch=branch,
        environment=environment,
    )
    return {"items": [ExecutionPublic.from_row(r) for r in rows], "next_cursor": next_cursor}


@router.get("/{execution_id}", response_model=ExecutionPublic, response_model_exclude_none=False)
def get_execution(
    execution_id: uuid.UUID,
    _: Viewer,
    session: SessionDep,
    include: Annotated[str | None, Query(description="comma-separated: steps, transitions")] = None,
) -> ExecutionPublic:
    wanted = _includes(include)
    execution = ex.get_execution(session, execution_id)
    public = ExecutionPublic.from_row(execution)
    if "steps" in wanted:
        public.steps = [StepPublic.model_validate(s) for s in _steps(session, execution, None)]
    if "transitions" in wanted:
        public.transitions = [
            TransitionPublic.model_validate(t) for t in ex.list_transitions(session, execution_id)
        ]
    return public


def _includes(include: str | None) -> set[str]:
    wanted = {part.strip() for part in include.split(",") if part.strip()} if include else set()
    unknown = wanted - INCLUDES
    if unknown:
        raise InvalidInput(
            f"include accepts {', '.join(sorted(INCLUDES))}; not {', '.join(sorted(unknown))}",
            field="query.include",
        )
    return wanted


@router.get("/{execution_id}/steps", response_model=list[StepPublic])
def get_steps(
    execution_id: uuid.UUID,
    _: Viewer,
    session: SessionDep,
    attempt: Annotated[
        int | None, Query(ge=1, le=INT4_MAX, description="default: the latest attempt")
    ] = None,
) -> object:
    """Step results recorded so far (they appear while the test runs). A case split into shards:
    those of every shard (the latest attempt of each), each naming its shard in execution_id."""
    return _steps(session, ex.get_execution(session, execution_id), attempt)


def _steps(session: Session, execution: Execution, attempt: int | None) -> list[StepTrace]:
    if execution.shard_plan is not None and attempt is None:
        return shard_steps(session, execution.id)
    return ex.list_steps(session, execution.id, attempt=attempt)


@router.get("/{execution_id}/transitions", response_model=list[TransitionPublic])
def get_transitions(execution_id: uuid.UUID, _: Viewer, session: SessionDep) -> object:
    """Every status change of the execution, oldest first."""
    ex.get_execution(session, execution_id)
    return ex.list_transitions(session, execution_id)

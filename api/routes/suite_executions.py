"""POST /api/v1/executions/suite: run a whole suite (one execution per member, under a suite execution)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Response

from anvil.domain.enums import Priority
from api.deps import SessionDep, SettingsDep, Tester
from api.routes.executions import to_public
from api.schemas import ExecutionPublic, SuiteExecutionCreate
from api.submission import ToPublish, lineage_of, submit_once
from db.models import Execution
from db.session import read_db_now
from db.suite_runs import create_suite_execution
from db.suites import get_suite

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])


@router.post("/suite", status_code=201, response_model=ExecutionPublic)
def submit_suite(
    body: SuiteExecutionCreate,
    user: Tester,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> ExecutionPublic:
    """Run every member of a suite: the suite execution and its children are created together.

    The suite execution goes RUNNING when its first member starts and takes its final status once
    every member has finished; ``progress`` shows done/total and counts by status meanwhile.
    With an Idempotency-Key, a repeated request returns the first suite execution.
    Each member retries by its case's policy, overridden by the suite's, overridden by ``retry_policy``;
    ``expires_in_s`` applies to each member (not started by then: SKIPPED, expired).
    """
    lineage = lineage_of(session, trigger_kind=body.trigger_kind, parent_id=body.parent_execution_id)

    def create(digest: str) -> tuple[Execution, ToPublish]:
        suite = get_suite(session, body.test_suite_id, field="body.test_suite_id")
        expires = read_db_now(session) + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
        return create_suite_execution(
            session,
            suite=suite,
            priority=body.priority or Priority(suite.default_priority),
            trigger_kind=body.trigger_kind,
            requested_by=user.id,
            actor=f"user:{user.username}",
            run_id=body.run_id,
            params=body.params,
            idempotency_key=idempotency_key,
            request_hash=digest,
            parent_execution_id=lineage.parent_execution_id,
            correlation_id=lineage.correlation_id,
            max_attempts=settings.max_attempts,
            retry_policy=body.retry_policy.layer() if body.retry_policy else None,
            expires_at=expires,
        )

    execution = submit_once(
        session,
        requested_by=user.id,
        idempotency_key=idempotency_key,
        body=body,
        response=response,
        create=create,
    )
    return to_public(execution)

"""Submissions: one test case, many at once, or a whole suite (api/submission.py does the work)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from api import submission
from api.deps import SessionDep, SettingsDep, Tester
from api.execution_schemas import (
    BatchExecutionCreate,
    BatchPublic,
    CaseExecutionCreate,
    ExecutionPublic,
    SuiteExecutionCreate,
)
from db.batches import MAX_BATCH_KEY

router = APIRouter()
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


@router.post("/suite", status_code=201, response_model=ExecutionPublic)
def submit_suite(
    body: SuiteExecutionCreate,
    user: Tester,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ExecutionPublic:
    """Run every member of a suite: the suite execution and its children are created together.

    The suite execution goes RUNNING when its first member starts and takes its final status once
    every member has finished; ``progress`` shows done/total and counts by status meanwhile.
    With an Idempotency-Key, a repeated request returns the first suite execution.
    Each member retries by its case's policy, overridden by the suite's, overridden by ``retry_policy``;
    ``expires_in_s`` applies to each member (not started by then: SKIPPED, expired).
    """
    execution = submission.submit_suite(
        session,
        body,
        user=user,
        max_attempts=settings.max_attempts,
        idempotency_key=idempotency_key,
        response=response,
    )
    return ExecutionPublic.from_row(execution)


@router.post("/batch", status_code=201, response_model=BatchPublic)
def submit_batch(
    body: BatchExecutionCreate,
    user: Tester,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    # Shorter than a single submission's: each item stores the key with "#<index>" appended.
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=MAX_BATCH_KEY)] = None,
) -> BatchPublic:
    """Run many test cases in one request: each item is what ``POST /api/v1/executions/case``
    takes and becomes its own execution, as if submitted alone.

    All or nothing: one bad item (its problem names it, e.g. ``body.items.3.test_case_id``) and
    none is created. The answer lists the executions in the items' order. With an
    Idempotency-Key, a repeated request returns the executions the first one created.
    """
    executions = submission.submit_batch(
        session,
        body,
        user=user,
        max_attempts=settings.max_attempts,
        idempotency_key=idempotency_key,
        response=response,
    )
    return BatchPublic(items=[ExecutionPublic.from_row(execution) for execution in executions])


@router.post("/case", status_code=201, response_model=ExecutionPublic)
def submit_case(
    body: CaseExecutionCreate,
    user: Tester,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ExecutionPublic:
    """Run one test case. With an Idempotency-Key, a repeated request returns the first execution.

    ``retry_policy`` overrides the case's policy key by key; ``expires_in_s``: not started by then,
    it ends SKIPPED (expired).
    """
    execution = submission.submit_case(
        session,
        body,
        user=user,
        max_attempts=settings.max_attempts,
        idempotency_key=idempotency_key,
        response=response,
    )
    return ExecutionPublic.from_row(execution)

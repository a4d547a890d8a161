from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.policy import resolve_retry_policy
from anvil.errors import AnvilError, NotFound
from api.deps import SessionDep, SettingsDep, Tester
from api.routes.executions import to_public
from api.schemas import BatchExecutionCreate, BatchPublic
from api.submission import ToPublish, lineage_of, submit_once
from db.batches import MAX_BATCH_KEY, BatchItem, create_batch, find_batch, item_key
from db.models import Execution, TestCase
from db.session import read_db_now

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])


@router.post("/batch", status_code=201, response_model=BatchPublic)
def submit_batch(
    body: BatchExecutionCreate,
    user: Tester,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=MAX_BATCH_KEY)] = None,
) -> BatchPublic:
    """Run many test cases in one request: each item is what ``POST /api/v1/executions/case``
    takes and becomes its own execution, as if submitted alone.

    All or nothing: one bad item (its problem names it, e.g. ``body.items.3.test_case_id``) and
    none is created. The answer lists the executions in the items' order. With an
    Idempotency-Key, a repeated request returns the executions the first one created.
    """
    items = _items(session, body, idempotency_key)

    def create(digest: str) -> tuple[list[Execution], ToPublish]:
        executions = create_batch(
            session,
            items,
            requested_by=user.id,
            actor=f"user:{user.username}",
            max_attempts=settings.max_attempts,
            request_hash=digest,
        )
        return executions, [(execution.id, execution.priority) for execution in executions]

    def find(key: str, digest: str) -> list[Execution] | None:
        return find_batch(session, requested_by=user.id, key=key, request_hash=digest, size=len(items))

    executions = submit_once(
        session,
        requested_by=user.id,
        idempotency_key=idempotency_key,
        body=body,
        response=response,
        create=create,
        find=find,
    )
    return BatchPublic(items=[to_public(execution) for execution in executions])


def _items(session: Session, body: BatchExecutionCreate, key: str | None) -> list[BatchItem]:
    """Check every item (cases exist, triggers and parents allowed) before anything is written."""
    wanted = {item.test_case_id for item in body.items}
    cases = {
        case.id: case
        for case in session.scalars(
            select(TestCase).where(TestCase.id.in_(wanted), TestCase.deleted_at.is_(None))
        )
    }
    now = read_db_now(session) if any(item.expires_in_s for item in body.items) else None
    items = []
    for index, item in enumerate(body.items):
        where = f"body.items.{index}"
        case = cases.get(item.test_case_id)
        if case is None:
            raise NotFound(f"test case {item.test_case_id} does not exist", field=f"{where}.test_case_id")
        try:
            lineage = lineage_of(session, trigger_kind=item.trigger_kind, parent_id=item.parent_execution_id)
        except AnvilError as exc:
            exc.field = exc.field and exc.field.replace("body.", f"{where}.", 1)
            raise
        submitted = item.retry_policy.layer() if item.retry_policy else None
        items.append(
            BatchItem(
                case=case,
                priority=item.priority,
                trigger_kind=item.trigger_kind,
                run_id=item.run_id,
                params=item.params,
                retry_policy=resolve_retry_policy(case.retry_policy, submitted).as_dict(),
                expires_at=now + timedelta(seconds=item.expires_in_s) if now and item.expires_in_s else None,
                idempotency_key=item_key(key, index) if key else None,
                parent_execution_id=lineage.parent_execution_id,
                correlation_id=lineage.correlation_id,
                root_execution_id=lineage.root_execution_id,
            )
        )
    return items

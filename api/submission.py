"""Submissions, from request body to published executions: the one place the API creates executions.

``submit_case``, ``submit_batch`` and ``submit_suite`` check a body, build what the db functions
take, and create, commit and publish through ``submit_once``. What they share: who may set which
trigger, parents, and idempotency. A submission with an ``Idempotency-Key`` creates at most one
execution per (user, key): a repeat with the same body answers with the first execution, a repeat
with another body is refused.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fastapi import Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.policy import resolve_retry_policy
from anvil.domain.shards import SHARDABLE, xdist_option
from anvil.errors import AnvilError, InvalidInput, NotFound
from api.execution_schemas import BatchExecutionCreate, CaseExecutionCreate, SuiteExecutionCreate
from api.selection import case_selection, suite_selection
from db.batches import BatchItem, create_batch, find_batch, item_key
from db.cases import get_case
from db.executions import find_idempotent
from db.models import Execution, TestCase, User
from db.sql import read_db_now
from db.suite_runs import create_suite_execution
from db.suites import get_suite
from workers.publish import publish_many

# retry, child and scheduled executions are created by the system only.
CALLER_TRIGGERS = frozenset(
    {TriggerKind.MANUAL, TriggerKind.API, TriggerKind.CI, TriggerKind.REPAIR, TriggerKind.AGENT}
)
NEEDS_PARENT = frozenset({TriggerKind.REPAIR, TriggerKind.AGENT})

# What to publish after the commit: (execution id, priority).
ToPublish = list[tuple[uuid.UUID, str]]
T = TypeVar("T")


@dataclass(frozen=True)
class Lineage:
    """Where a new execution joins the graph: its parent, the parent's correlation and root."""

    parent_execution_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    root_execution_id: uuid.UUID | None = None


def lineage_of(session: Session, *, trigger_kind: TriggerKind, parent_id: uuid.UUID | None) -> Lineage:
    """Check the caller may use ``trigger_kind``, and that a named parent exists."""
    if trigger_kind not in CALLER_TRIGGERS:
        allowed = ", ".join(sorted(t.value for t in CALLER_TRIGGERS))
        raise InvalidInput(
            f"trigger_kind {trigger_kind.value!r} is set by the system; submissions may use {allowed}",
            field="body.trigger_kind",
        )
    if parent_id is None:
        if trigger_kind in NEEDS_PARENT:
            raise InvalidInput(
                f"trigger_kind {trigger_kind.value!r} needs parent_execution_id: the execution it follows up",
                field="body.parent_execution_id",
            )
        return Lineage()
    parent = session.get(Execution, parent_id)
    if parent is None:
        raise InvalidInput(f"execution {parent_id} does not exist", field="body.parent_execution_id")
    return Lineage(parent.id, parent.correlation_id, parent.root_execution_id)


def request_hash(body: BaseModel) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_once(
    session: Session,
    *,
    requested_by: uuid.UUID,
    idempotency_key: str | None,
    body: BaseModel,
    response: Response,
    create: Callable[[str], tuple[T, ToPublish]],
    find: Callable[[str, str], T | None] | None = None,
) -> T:
    """Run ``create(request_hash)``, commit, then publish; with a key, a repeat returns the first.

    ``create`` writes in the session without committing and returns the new execution (or
    executions) and what to publish once the commit is done. ``find(key, request_hash)`` looks up
    what an earlier request with the key created (default: the one execution holding the key).
    """
    digest = request_hash(body)

    def earlier_one(key: str, digest: str) -> Any:
        return find_idempotent(session, requested_by=requested_by, key=key, request_hash=digest)

    find = find or earlier_one
    if idempotency_key:
        earlier = find(idempotency_key, digest)
        if earlier is not None:
            response.headers["Idempotent-Replayed"] = "true"
            return earlier
    try:
        execution, to_publish = create(digest)
        session.commit()
    except IntegrityError:
        # The same key raced us to the insert: answer with the winner's execution.
        session.rollback()
        if not idempotency_key:
            raise
        earlier = find(idempotency_key, digest)
        if earlier is None:
            raise
        response.headers["Idempotent-Replayed"] = "true"
        return earlier
    publish_many(to_publish)
    if isinstance(execution, Execution):
        response.headers["Location"] = f"/api/v1/executions/{execution.id}"
    return execution


def submit_case(
    session: Session,
    body: CaseExecutionCreate,
    *,
    user: User,
    max_attempts: int,
    idempotency_key: str | None,
    response: Response,
) -> Execution:
    """One case execution: a batch of one."""
    lineage = lineage_of(session, trigger_kind=body.trigger_kind, parent_id=body.parent_execution_id)

    def create(digest: str) -> tuple[Execution, ToPublish]:
        case = get_case(session, body.test_case_id, field="body.test_case_id")
        now = read_db_now(session) if body.expires_in_s else None
        item = _case_item(
            case,
            body,
            lineage=lineage,
            now=now,
            idempotency_key=idempotency_key,
            selection=_selection_of(session, case, body, field="body.selection"),
        )
        (execution,) = create_batch(
            session,
            [item],
            requested_by=user.id,
            actor=f"user:{user.username}",
            max_attempts=max_attempts,
            request_hash=digest,
        )
        return execution, [(execution.id, execution.priority)]

    return submit_once(
        session,
        requested_by=user.id,
        idempotency_key=idempotency_key,
        body=body,
        response=response,
        create=create,
    )


def submit_batch(
    session: Session,
    body: BatchExecutionCreate,
    *,
    user: User,
    max_attempts: int,
    idempotency_key: str | None,
    response: Response,
) -> list[Execution]:
    """Many case executions, all or none, in the items' order."""
    items = _batch_items(session, body, idempotency_key)

    def create(digest: str) -> tuple[list[Execution], ToPublish]:
        executions = create_batch(
            session,
            items,
            requested_by=user.id,
            actor=f"user:{user.username}",
            max_attempts=max_attempts,
            request_hash=digest,
        )
        return executions, [(execution.id, execution.priority) for execution in executions]

    def find(key: str, digest: str) -> list[Execution] | None:
        return find_batch(session, requested_by=user.id, key=key, request_hash=digest, size=len(items))

    return submit_once(
        session,
        requested_by=user.id,
        idempotency_key=idempotency_key,
        body=body,
        response=response,
        create=create,
        find=find,
    )


def submit_suite(
    session: Session,
    body: SuiteExecutionCreate,
    *,
    user: User,
    max_attempts: int,
    idempotency_key: str | None,
    response: Response,
) -> Execution:
    """A suite execution with one child per member, created together."""
    lineage = lineage_of(session, trigger_kind=body.trigger_kind, parent_id=body.parent_execution_id)

    def create(digest: str) -> tuple[Execution, ToPublish]:
        suite = get_suite(session, body.test_suite_id, field="body.test_suite_id")
        expires = read_db_now(session) + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
        members, stored, per_member = (
            suite_selection(session, suite, body.selection, branch=body.branch)
            if body.selection
            else (None, None, None)
        )
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
            max_attempts=max_attempts,
            retry_policy=body.retry_policy.layer() if body.retry_policy else None,
            expires_at=expires,
            source=body.source(),
            members=members,  # with a selection: only the cases it selected, each with its own
            selection=stored,
            member_selections=per_member,
            gate=body.gate.as_dict() if body.gate else None,
        )

    return submit_once(
        session,
        requested_by=user.id,
        idempotency_key=idempotency_key,
        body=body,
        response=response,
        create=create,
    )


def _case_item(
    case: TestCase,
    body: CaseExecutionCreate,
    *,
    lineage: Lineage,
    now: datetime | None,
    idempotency_key: str | None,
    selection: dict[str, Any] | None = None,
) -> BatchItem:
    """What the db takes for one case submission: the case's retry policy under the body's, and
    the expiry counted from ``now`` (the database's clock)."""
    submitted = body.retry_policy.layer() if body.retry_policy else None
    if body.shards is not None and case.kind not in SHARDABLE:
        why = f"shards split pytest and bdd cases; case {case.name!r} is a {case.kind} case"
        raise InvalidInput(why, field="body.shards")
    option = xdist_option(case.spec.get("args") or ()) if body.shards not in (None, 1) else None
    if option is not None:
        why = f"case {case.name!r} runs pytest-xdist ({option}); shards and xdist do not mix"
        raise InvalidInput(why, field="body.shards")
    if body.gate is not None and case.kind not in SHARDABLE:
        why = f"gates judge suites and pytest or bdd cases; case {case.name!r} is a {case.kind} case"
        raise InvalidInput(why, field="body.gate")
    return BatchItem(
        case=case,
        priority=body.priority,
        trigger_kind=body.trigger_kind,
        run_id=body.run_id,
        params=body.params,
        retry_policy=resolve_retry_policy(case.retry_policy, submitted).as_dict(),
        expires_at=now + timedelta(seconds=body.expires_in_s) if now and body.expires_in_s else None,
        idempotency_key=idempotency_key,
        parent_execution_id=lineage.parent_execution_id,
        correlation_id=lineage.correlation_id,
        root_execution_id=lineage.root_execution_id,
        source=body.source(),
        selection=selection,
        shards=body.shards,
        gate=body.gate.as_dict() if body.gate else None,
    )


def _selection_of(
    session: Session, case: TestCase, body: CaseExecutionCreate, *, field: str
) -> dict[str, Any] | None:
    if body.selection is None:
        return None
    return case_selection(session, case, body.selection, branch=body.branch, field=field)


def _batch_items(session: Session, body: BatchExecutionCreate, key: str | None) -> list[BatchItem]:
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
            # lineage_of names the field of a single submission: point it at this item.
            exc.field = exc.field and exc.field.replace("body.", f"{where}.", 1)
            raise
        key_of_item = item_key(key, index) if key else None
        selection = _selection_of(session, case, item, field=f"{where}.selection")
        items.append(
            _case_item(case, item, lineage=lineage, now=now, idempotency_key=key_of_item, selection=selection)
        )
    return items

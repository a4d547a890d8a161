"""Case executions submitted through the API, one or many at once.

Each item becomes its own execution (the root of its own tree, unless it names a parent); a
single submission is a batch of one. With an Idempotency-Key, item i of a batch stores
``<key>#<i>``, so a repeated batch finds the executions it created the first time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.errors import InvalidInput
from db.executions import NewExecution, Source, case_snapshot, find_idempotent, insert_executions
from db.models import Execution, TestCase

# "#<index>" is appended to a batch's key per item; the column holds 200 characters.
MAX_BATCH_KEY = 190


@dataclass(frozen=True)
class BatchItem:
    """One execution to create: the case, and what the submission said about it."""

    case: TestCase
    priority: Priority
    trigger_kind: TriggerKind
    run_id: str | None
    params: dict[str, Any]
    retry_policy: dict[str, Any]
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    parent_execution_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    root_execution_id: uuid.UUID | None = None
    source: Source = field(default_factory=Source)
    selection: dict[str, Any] | None = None
    shards: int | str | None = None  # the submission's override of the case's own
    gate: dict[str, Any] | None = None  # the submission's quality gate, replacing the case's


def item_key(key: str, index: int) -> str:
    return f"{key}#{index}"


def find_batch(
    session: Session, *, requested_by: uuid.UUID, key: str, request_hash: str, size: int
) -> list[Execution] | None:
    """The executions an earlier batch with this key created, in its order; None if there was none.

    A key used before for another body (or for a single submission) is refused (422).
    """
    first = find_idempotent(
        session, requested_by=requested_by, key=item_key(key, 0), request_hash=request_hash
    )
    if first is None:
        if (
            find_idempotent(session, requested_by=requested_by, key=key, request_hash=request_hash)
            is not None
        ):
            raise InvalidInput(
                "Idempotency-Key was already used for a single submission", field="Idempotency-Key"
            )
        return None
    keys = [item_key(key, i) for i in range(size)]
    found = {
        execution.idempotency_key: execution
        for execution in session.scalars(
            select(Execution).where(
                Execution.requested_by == requested_by, Execution.idempotency_key.in_(keys)
            )
        )
    }
    if len(found) != size:
        raise InvalidInput(
            "Idempotency-Key was already used with a different request body", field="Idempotency-Key"
        )
    return [found[k] for k in keys]


def create_batch(
    session: Session,
    items: list[BatchItem],
    *,
    requested_by: uuid.UUID,
    actor: str,
    max_attempts: int,
    request_hash: str | None = None,
) -> list[Execution]:
    """Insert one QUEUED execution per item (db.executions.insert_executions); the caller commits,
    then publishes. Returns the executions (not attached to the session), in the items' order."""
    return insert_executions(
        session,
        [
            NewExecution(
                snapshot=_with_gate(_with_shards(case_snapshot(item.case), item.shards), item.gate),
                test_case_id=item.case.id,
                priority=item.priority,
                trigger_kind=item.trigger_kind,
                requested_by=requested_by,
                run_id=item.run_id,
                params=item.params,
                retry_policy=item.retry_policy,
                expires_at=item.expires_at,
                idempotency_key=item.idempotency_key,
                request_hash=request_hash,
                parent_execution_id=item.parent_execution_id,
                correlation_id=item.correlation_id,
                root_execution_id=item.root_execution_id,
                source=item.source,
                selection=item.selection,
            )
            for item in items
        ],
        actor=actor,
        max_attempts=max_attempts,
    )


def _with_shards(snapshot: dict[str, Any], shards: int | str | None) -> dict[str, Any]:
    """The snapshot the execution runs: a submission's ``shards`` replaces the case's."""
    if shards is None:
        return snapshot
    return {**snapshot, "spec": {**snapshot["spec"], "shards": shards}}


def _with_gate(snapshot: dict[str, Any], gate: dict[str, Any] | None) -> dict[str, Any]:
    """The snapshot the execution is judged by: a submission's ``gate`` replaces the case's."""
    if gate is None:
        return snapshot
    return {**snapshot, "spec": {**snapshot["spec"], "gate": gate}}

"""Case executions submitted through the API, one or many at once: three bulk statements.

Each item becomes its own execution (the root of its own tree, unless it names a parent); a
single submission is a batch of one. With an Idempotency-Key, item i of a batch stores
``<key>#<i>``, so a repeated batch finds the executions it created the first time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, TriggerKind
from anvil.domain.states import Status
from anvil.errors import InvalidInput
from db import events
from db.executions import case_snapshot, find_idempotent
from db.models import Execution, ExecutionTransition, TestCase
from db.types import utcnow

EXECUTIONS = cast(Table, Execution.__table__)
TRANSITIONS = cast(Table, ExecutionTransition.__table__)
INSERT_EXECUTIONS = insert(EXECUTIONS)
INSERT_TRANSITIONS = insert(TRANSITIONS).returning(TRANSITIONS.c.id, sort_by_parameter_order=True)
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
    """Insert one QUEUED execution per item with its transition and event rows; the caller commits,
    then publishes. Returns the executions (not attached to the session), in the items' order."""
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        execution_id = uuid.uuid4()
        root_id = item.root_execution_id or execution_id
        rows.append(
            {
                **_EMPTY,
                "id": execution_id,
                "test_case_id": item.case.id,
                "case_snapshot": case_snapshot(item.case),
                "status": Status.QUEUED.value,
                "priority": item.priority.value,
                "max_attempts": max_attempts,
                "trigger_kind": item.trigger_kind.value,
                "correlation_id": item.correlation_id or execution_id,
                "root_execution_id": root_id,
                # A new root's QUEUED event is number 1 of its own stream.
                "event_seq": 1 if root_id == execution_id else 0,
                "parent_execution_id": item.parent_execution_id,
                "run_id": item.run_id,
                "requested_by": requested_by,
                "idempotency_key": item.idempotency_key,
                "request_hash": request_hash,
                "params": item.params,
                # Distinct and increasing: the batch lists newest-first in reverse of its order.
                "created_at": now + timedelta(microseconds=index),
                "queued_at": now,
                "published_at": now,
                "publish_count": 1,
                "retry_policy": item.retry_policy,
                "expires_at": item.expires_at,
            }
        )
    session.execute(INSERT_EXECUTIONS, rows)
    transition_ids = session.scalars(
        INSERT_TRANSITIONS,
        [
            {"execution_id": row["id"], "attempt": 0, "from_status": None, "to_status": Status.QUEUED.value,
             "at": now, "actor": actor, "reason": "submitted"}
            for row in rows
        ],
    ).all()  # fmt: skip
    numbered: list[dict[str, Any]] = []
    for row, transition_id in zip(rows, transition_ids, strict=True):
        data = {
            "execution_id": str(row["id"]),
            "transition_id": transition_id,
            "attempt": 0,
            "from": None,
            "to": Status.QUEUED.value,
            "actor": actor,
            "reason": "submitted",
            "at": now.isoformat(),
        }
        root_id = row["root_execution_id"]
        if root_id == row["id"]:
            numbered.append(
                {"root_execution_id": root_id, "seq": 1, "execution_id": root_id, "type": "transition",
                 "data": data, "at": now}
            )  # fmt: skip
        else:  # under a parent's tree: that root's next number
            events.append(
                session, execution_id=row["id"], root_id=root_id, seq=None, type_="transition", data=data
            )
    events.insert_new_roots(session, numbered)
    return [Execution(**row) for row in rows]


# Every other column of a new execution, as its model defaults would set it.
_EMPTY: dict[str, Any] = {
    "test_suite_id": None,
    "attempt": 0,
    "started_at": None,
    "finished_at": None,
    "run_at": None,
    "lease_expires_at": None,
    "worker": None,
    "summary": {},
    "error": None,
    "retry_index": 0,
    "flaky": False,
    "cancel_requested_at": None,
    "schedule_id": None,
    "slot_at": None,
    "assigned_to": None,
    "assigned_at": None,
}

"""What case and suite submissions share: who may set which trigger, parents, and idempotency.

A submission with an ``Idempotency-Key`` creates at most one execution per (user, key): a repeat
with the same body answers with the first execution, a repeat with another body is refused.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Response
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anvil.domain.enums import TriggerKind
from anvil.errors import InvalidInput
from db.executions import find_idempotent
from db.models import Execution
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

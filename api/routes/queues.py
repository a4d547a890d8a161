"""``GET /api/v1/queues``: what waits per priority, from PostgreSQL (the source of truth; Flower
cannot show the depth of Redis priority queues, and copies of a message would inflate it). Any
logged-in role reads it."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, Viewer
from api.queue_schemas import QueueList, QueuePublic
from db.queues import queue_depths
from db.sql import read_db_now

router = APIRouter(prefix="/api/v1/queues", tags=["queues"])


@router.get("", response_model=QueueList)
def list_queues(_: Viewer, session: SessionDep) -> QueueList:
    """Each priority's QUEUED executions: how many, and how long the oldest has waited."""
    now = read_db_now(session)
    depths = queue_depths(session, now)
    return QueueList(
        items=[QueuePublic.model_validate(d) for d in depths],
        waiting=sum(d.waiting for d in depths),
        now=now,
    )

"""Response body of the queue depths (api/routes/queues.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from anvil.domain.enums import Priority


class QueuePublic(BaseModel):
    """One priority's queue, as PostgreSQL holds it."""

    model_config = ConfigDict(from_attributes=True)

    priority: Priority
    queue: str = Field(description="the Celery queue of this priority, e.g. critical")
    waiting: int = Field(description="executions QUEUED at this priority, not yet claimed by a worker")
    oldest_queued_at: datetime | None = Field(
        description="when the longest-waiting one was queued; null: none waits"
    )
    oldest_wait_s: float | None = Field(description="how long it has waited, in seconds; null: none waits")


class QueueList(BaseModel):
    items: list[QueuePublic] = Field(description="every priority, highest first (0 waiting included)")
    waiting: int = Field(description="executions QUEUED at any priority")
    now: datetime = Field(description="the database clock the waits were measured at")

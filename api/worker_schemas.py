"""Response bodies of the worker registry (api/routes/workers.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from anvil.domain.workers import WorkerState


class WorkerPublic(BaseModel):
    """A worker process as it registered itself, and its state now."""

    model_config = ConfigDict(from_attributes=True)

    name: str = Field(description="the Celery node name, e.g. celery@host (`anvil worker -n`)")
    host: str
    pid: int
    slots: int = Field(description="tests it runs at once: its concurrency (with autoscale, the maximum)")
    queues: list[str] = Field(description="the queues it consumes, highest priority first")
    version: str = Field(description="the Anvil version it runs")
    started_at: datetime
    heartbeat_at: datetime = Field(description="its last heartbeat")
    stopped_at: datetime | None = Field(description="when it shut down gracefully; null while running")
    state: WorkerState = Field(
        description="live; stale (no heartbeat for 3 heartbeat intervals: killed, or cut off); stopped"
    )


class WorkerTotals(BaseModel):
    live_workers: int
    live_slots: dict[str, int] = Field(
        description="queue -> the slots of the live workers that consume it (every queue, 0 included)"
    )


class WorkerList(BaseModel):
    items: list[WorkerPublic]
    totals: WorkerTotals = Field(description="over the live workers, whatever ?state= selects")
    heartbeat_s: float = Field(
        description="how often workers renew their heartbeat (ANVIL_WORKER_HEARTBEAT_S)"
    )
    stale_after_s: float = Field(description="a worker this long without a heartbeat is stale")
    now: datetime = Field(description="the database clock the states were judged at")

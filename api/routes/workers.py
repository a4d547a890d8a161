"""The worker registry: which worker processes run, their slots and queues, and the live capacity
per queue. Workers keep their rows fresh themselves (workers/registry.py); any logged-in role reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from anvil.domain.workers import WorkerState, stale_after
from api.deps import SessionDep, SettingsDep, Viewer
from api.worker_schemas import WorkerList, WorkerPublic, WorkerTotals
from db import workers
from db.sql import read_db_now

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])


@router.get("", response_model=WorkerList)
def list_workers(
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    state: Annotated[WorkerState | None, Query(description="only the workers in this state")] = None,
) -> WorkerList:
    """The registered workers by name, each live, stale or stopped; totals over the live ones."""
    now = read_db_now(session)
    found = workers.list_workers(session, now=now, state=state)
    live = workers.capacity(session, now=now)
    return WorkerList(
        items=[WorkerPublic.model_validate(w) for w in found],
        totals=WorkerTotals(live_workers=live.workers, live_slots=live.slots),
        heartbeat_s=settings.worker_heartbeat_s,
        stale_after_s=stale_after(settings.worker_heartbeat_s).total_seconds(),
        now=now,
    )

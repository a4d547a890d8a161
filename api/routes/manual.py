"""The queue of manual tests waiting for a tester. Acting on one of them (assign, record a step's
result) is under its execution: api/routes/executions/manual.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, SettingsDep, Viewer
from api.execution_schemas import ExecutionPublic
from db import manual

router = APIRouter(prefix="/api/v1/manual", tags=["manual tests"])


@router.get("/queue", response_model=list[ExecutionPublic])
def manual_queue(
    _: Viewer, session: SessionDep, settings: SettingsDep, limit: Annotated[int, Query(ge=1)] = 50
) -> list[ExecutionPublic]:
    """Manual executions waiting for a tester: highest priority first, oldest first."""
    limit = min(limit, settings.page_limit_max)
    return [ExecutionPublic.from_row(e) for e in manual.manual_queue(session, limit=limit)]

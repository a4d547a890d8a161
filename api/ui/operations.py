"""The operations page, ``/ui/operations``: what waits and what runs, read from PostgreSQL (the
source of truth, whatever the broker holds): the depth of each priority's queue and its oldest
wait (db/queues.py), the executions QUEUED, RUNNING and PAUSED, the worker processes with their
slots, busy slots and last heartbeat (db/workers.py, as ``GET /api/v1/workers``), and the latest
dead letters (ABORTED executions, db/dead_letters.py) with why. The figures (``…/live``) refresh
themselves every few seconds; Flower is linked when ANVIL_FLOWER_URL says where it is.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from anvil.domain.states import Status
from anvil.domain.workers import stale_after
from anvil.settings import Settings
from api.deps import SessionDep, SettingsDep
from api.ui.pages import PageRoute, render
from api.ui.session import PageUser
from db import workers
from db.dead_letters import recent_dead_letters
from db.queues import busy_slots, queue_depths, status_counts
from db.sql import read_db_now

router = APIRouter(route_class=PageRoute)

DEAD_LETTERS = 20  # the latest shown; the runs page lists them all (status ABORTED)
REFRESH_S = 3
COUNTED = (Status.QUEUED, Status.RUNNING, Status.PAUSED)


def _live(session: Session, settings: Settings) -> dict[str, Any]:
    now = read_db_now(session)
    return {
        "now": now,
        "depths": queue_depths(session, now),
        "counts": status_counts(session, COUNTED),
        "workers": workers.list_workers(session, now=now),
        "capacity": workers.capacity(session, now=now),
        "busy": busy_slots(session),
        "stale_after_s": stale_after(settings.worker_heartbeat_s).total_seconds(),
        "dead_letters": recent_dead_letters(session, limit=DEAD_LETTERS),
        "dead_letters_max": DEAD_LETTERS,
        "refresh_s": REFRESH_S,
    }


@router.get("/operations", response_class=HTMLResponse)
def operations_page(
    request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    return render(
        request, "operations.html", viewer, flower_url=settings.flower_url, **_live(session, settings)
    )


@router.get("/operations/live", response_class=HTMLResponse)
def operations_live(
    request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The figures alone, for the live refresh."""
    return render(request, "operations_live.html", viewer, **_live(session, settings))

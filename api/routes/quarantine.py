"""Quarantine of a test: maintainers set and lift it; everyone reads its audit.

A quarantined test still runs and is recorded, but its failure does not fail its execution or suite
(workers/execute.py). POST on a test already under quarantine updates its reason and expiry (200;
201 when it starts one): raising an expiry or rewording a reason needs no release in between, and
every change is in the audit. DELETE on a test not under quarantine (never, lifted, or expired) is
a 409. Listing tests, with ``quarantined=true``, is GET /api/v1/tests.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from anvil.errors import InvalidInput
from api.deps import Maintainer, SessionDep, SettingsDep, Viewer
from api.quarantine_schemas import (
    QuarantineCreate,
    QuarantineEventPublic,
    QuarantineRelease,
    QuarantineState,
    Reason,
)
from api.schemas import Page
from db import quarantine
from db.history import get_test
from db.sql import read_db_now

router = APIRouter(prefix="/api/v1/tests", tags=["quarantine"])


@router.post(
    "/{test_id}/quarantine",
    response_model=QuarantineState,
    status_code=201,
    responses={200: {"model": QuarantineState, "description": "the quarantine already held: updated"}},
)
def quarantine_test(
    test_id: uuid.UUID, body: QuarantineCreate, user: Maintainer, session: SessionDep, response: Response
) -> QuarantineState:
    """Quarantine a test (maintainer or admin), with a reason and an optional expiry
    (``expires_at`` or ``expires_in_days``); on a quarantined test, update its reason and expiry."""
    if body.expires_at is not None and body.expires_in_days is not None:
        raise InvalidInput("give expires_at or expires_in_days, not both", field="body.expires_in_days")
    now = read_db_now(session)
    expires_at = body.expiry(now)
    if expires_at is not None and expires_at <= now:
        raise InvalidInput(
            f"expires_at must be in the future (now is {now.isoformat()})", field="body.expires_at"
        )
    test, newly = quarantine.quarantine(
        session, test_id, reason=body.reason, expires_at=expires_at, actor=user.username, now=now
    )
    state = QuarantineState.of(test, now=now)
    session.commit()
    response.status_code = 201 if newly else 200
    return state


@router.delete("/{test_id}/quarantine", response_model=QuarantineState)
def release_test(
    test_id: uuid.UUID,
    user: Maintainer,
    session: SessionDep,
    reason: Annotated[Reason | None, Query(description="why it is lifted (kept in the audit)")] = None,
    body: Annotated[QuarantineRelease | None, Body()] = None,
) -> QuarantineState:
    """Lift a test's quarantine (maintainer or admin); the reason may come as ?reason= or in a body."""
    now = read_db_now(session)
    test = quarantine.release(
        session, test_id, actor=user.username, now=now, reason=(body.reason if body else None) or reason
    )
    state = QuarantineState.of(test, now=now)
    session.commit()
    return state


@router.get("/{test_id}/quarantine/events", response_model=Page[QuarantineEventPublic])
def quarantine_events(
    test_id: uuid.UUID,
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> dict[str, object]:
    """The audit of a test's quarantine, newest first: who quarantined, released or let it expire,
    when and why."""
    get_test(session, test_id)
    before = _cursor(cursor)
    limit = min(limit, settings.page_limit_max)
    rows = quarantine.events(session, test_id, limit=limit + 1, before=before)
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return {
        "items": [QuarantineEventPublic.model_validate(r) for r in rows[:limit]],
        "next_cursor": next_cursor,
    }


def _cursor(cursor: str | None) -> int | None:
    if not cursor:  # absent or empty (?cursor=): the first page
        return None
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidInput("cursor is not one this API returned", field="query.cursor")
    return int(cursor)

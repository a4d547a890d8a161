"""Cron schedules: CRUD, and running one now. Changes take effect on the scheduler's next tick."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from anvil.domain.policy import next_fire_times
from anvil.errors import InvalidInput, NotFound
from api.deps import Maintainer, SessionDep, SettingsDep, Tester, Viewer
from api.execution_schemas import ExecutionPublic
from api.schemas import Page, ScheduleCreate, SchedulePublic, ScheduleUpdate
from db import schedules
from db.cases import get_case
from db.models import Schedule
from db.sql import read_db_now
from db.suites import get_suite
from workers.publish import publish_many

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])

# PATCH may not clear these (the target is switched by giving the other id, not by clearing one).
NOT_NULL = ("name", "cron", "timezone", "priority", "enabled", "overlap", "params")


def schedule_public(schedule: Schedule, *, now: datetime) -> SchedulePublic:
    fields: dict[str, Any] = {
        column.key: getattr(schedule, column.key) for column in Schedule.__table__.columns
    }
    upcoming = next_fire_times(cron=schedule.cron, tz=schedule.timezone, now=now) if schedule.enabled else []
    return SchedulePublic.model_validate({**fields, "next_fire_times": upcoming})


def _check_target(session: Session, case_id: uuid.UUID | None, suite_id: uuid.UUID | None) -> None:
    """Exactly one target, and it exists (a missing one is bad input here, not a missing resource)."""
    if (case_id is None) == (suite_id is None):
        raise InvalidInput("give exactly one of test_case_id and test_suite_id", field="body.test_case_id")
    try:
        if case_id is not None:
            get_case(session, case_id, field="body.test_case_id")
        elif suite_id is not None:
            get_suite(session, suite_id, field="body.test_suite_id")
    except NotFound as exc:
        raise InvalidInput(exc.detail, field=exc.field) from exc


@router.post("", status_code=201, response_model=SchedulePublic)
def create_schedule(
    body: ScheduleCreate, user: Maintainer, session: SessionDep, response: Response
) -> SchedulePublic:
    """Define a schedule (maintainer or admin). Its first slot is the first one after now."""
    _check_target(session, body.test_case_id, body.test_suite_id)
    fields = body.model_dump()
    fields["priority"] = body.priority.value
    schedule = schedules.create_schedule(session, created_by=user.id, **fields)
    session.commit()
    response.headers["Location"] = f"/api/v1/schedules/{schedule.id}"
    return schedule_public(schedule, now=read_db_now(session))


@router.get("", response_model=Page[SchedulePublic])
def list_schedules(
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> dict[str, object]:
    """Schedules newest first; follow next_cursor for older ones.

    A schedule whose test case or suite was deleted is disabled, and ``disabled_reason`` says so.
    """
    items, next_cursor = schedules.list_schedules(
        session, limit=min(limit, settings.page_limit_max), cursor=cursor
    )
    now = read_db_now(session)
    return {"items": [schedule_public(s, now=now) for s in items], "next_cursor": next_cursor}


@router.get("/{schedule_id}", response_model=SchedulePublic)
def get_schedule(schedule_id: uuid.UUID, _: Viewer, session: SessionDep) -> SchedulePublic:
    return schedule_public(schedules.get_schedule(session, schedule_id), now=read_db_now(session))


@router.patch("/{schedule_id}", response_model=SchedulePublic)
def update_schedule(
    schedule_id: uuid.UUID, body: ScheduleUpdate, _: Maintainer, session: SessionDep
) -> SchedulePublic:
    """Change a schedule; the scheduler uses the change from its next tick.

    A new cron, time zone or enabled flag counts from now: slots before the change are not made up.
    Enabling clears ``disabled_reason``; it is refused (409) while the schedule's test case or suite
    is deleted (point it at another one in the same request to enable it).
    """
    schedule = schedules.get_schedule(session, schedule_id)
    changes = body.model_dump(exclude_unset=True)
    for required in NOT_NULL:
        if required in changes and changes[required] is None:
            raise InvalidInput(f"{required} cannot be null", field=f"body.{required}")
    if "test_case_id" in changes or "test_suite_id" in changes:
        case_id, suite_id = changes.get("test_case_id"), changes.get("test_suite_id")
        _check_target(session, case_id, suite_id)
        changes.update(test_case_id=case_id, test_suite_id=suite_id)
    if "priority" in changes:
        changes["priority"] = changes["priority"].value
    schedules.update_schedule(session, schedule, changes)
    session.commit()
    return schedule_public(schedule, now=read_db_now(session))


@router.delete("/{schedule_id}", status_code=204)
def delete_schedule(schedule_id: uuid.UUID, _: Maintainer, session: SessionDep) -> Response:
    """Remove a schedule; the executions it fired stay, without the link."""
    schedules.delete_schedule(session, schedules.get_schedule(session, schedule_id))
    session.commit()
    return Response(status_code=204)


@router.post("/{schedule_id}/trigger", status_code=201, response_model=ExecutionPublic)
def trigger_schedule(
    schedule_id: uuid.UUID, user: Tester, session: SessionDep, response: Response
) -> ExecutionPublic:
    """Run the schedule's target now (even while disabled, and whatever its overlap policy).

    Returns the execution started: trigger_kind scheduled, slot_at now.
    """
    schedule = schedules.get_schedule(session, schedule_id)
    execution, to_publish = schedules.trigger_now(session, schedule, actor=f"user:{user.username}")
    session.commit()
    publish_many(to_publish)
    response.headers["Location"] = f"/api/v1/executions/{execution.id}"
    return ExecutionPublic.from_row(execution)

"""The schedules page, ``/ui/schedules``: every cron schedule with its target, next fire time and
latest run; Pause, Resume and Trigger now; a form to create or edit one (``/ui/schedules/new``,
``/ui/schedules/{id}/edit``; api/ui/schedules_form.py).

Every change runs the API's own handler (api/routes/schedules.py) with the API's body models, so
validation (cron, time zone, target, a name taken) and what is written are the API's, and so is the
role each needs (maintainer to define, pause or resume; tester to trigger). A form the API refuses
is shown again, nothing written, with the API's message beside the field and its status code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role
from anvil.domain.policy import next_fire_times
from anvil.errors import AnvilError, NotFound
from api.deps import SessionDep, SettingsDep
from api.routes import schedules as api
from api.schemas import ScheduleUpdate
from api.ui.pages import PageRoute, render
from api.ui.schedules_form import (
    KINDS,
    OVERLAPS,
    ScheduleForm,
    create_body,
    field_of,
    form_of,
    posted_form,
    update_body,
)
from api.ui.session import FormUser, PageUser, SignedIn
from db import schedules as db
from db.models import Execution, Schedule, TestCase, TestSuite
from db.sql import read_db_now

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 50
SUGGESTIONS = 200  # names offered while typing a target (the newest of each kind)
PostedForm = Annotated[ScheduleForm, Depends(posted_form)]


@dataclass
class Row:
    """One schedule as the list shows it."""

    schedule: Schedule
    target_kind: str
    target_name: str
    target_deleted: bool
    next_fire: datetime | None
    next_fire_local: str
    last_run: Execution | None


def _ident(schedule_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(schedule_id)
    except ValueError:
        raise NotFound(f"there is no schedule {schedule_id!r}") from None


def _next_fire(schedule: Schedule, now: datetime) -> tuple[datetime | None, str]:
    if not schedule.enabled:
        return None, ""
    try:
        (upcoming,) = next_fire_times(cron=schedule.cron, tz=schedule.timezone, now=now, count=1)
    except (ValueError, KeyError):  # a zone gone from the host's tzdata: say so, list the others
        return None, "cannot be computed (unknown time zone on this server)"
    local = upcoming.astimezone(ZoneInfo(schedule.timezone))
    return upcoming, f"{local:%Y-%m-%d %H:%M} {schedule.timezone}"


def _rows(session: Session, found: list[Schedule]) -> list[Row]:
    now = read_db_now(session)
    targets = db.targets_of(session, found)
    runs = db.last_runs(session, [s.id for s in found])
    rows = []
    for schedule in found:
        kind = "case" if schedule.test_case_id is not None else "suite"
        target_id = schedule.test_case_id or schedule.test_suite_id
        name, deleted = targets.get(target_id, (str(target_id), True)) if target_id else ("–", True)
        rows.append(Row(schedule, kind, name, deleted, *_next_fire(schedule, now), runs.get(schedule.id)))
    return rows


@router.get("/schedules", response_class=HTMLResponse)
def schedules_page(
    request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    cursor = request.query_params.get("cursor") or None
    found, next_cursor = db.list_schedules(
        session, limit=min(PAGE_SIZE, settings.page_limit_max), cursor=cursor
    )
    return render(
        request,
        "schedules_list.html",
        viewer,
        rows=_rows(session, found),
        next_url=f"/ui/schedules?cursor={next_cursor}" if next_cursor else None,
        first_url="/ui/schedules" if cursor else None,
        may_define=viewer.may(Role.MAINTAINER),
        may_trigger=viewer.may(Role.TESTER),
        kinds=KINDS,
    )


# ---- create and edit -----------------------------------------------------------------------------


def _suggestions(session: Session) -> dict[str, list[str]]:
    names = {}
    for kind, model in (("case", TestCase), ("suite", TestSuite)):
        newest = (
            select(model.name)
            .where(model.deleted_at.is_(None))
            .order_by(model.created_at.desc())
            .limit(SUGGESTIONS)
        )
        names[kind] = sorted(session.scalars(newest))
    return names


def _show_form(
    request: Request,
    viewer: SignedIn,
    session: Session,
    form: ScheduleForm,
    schedule: Schedule | None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "schedules_form.html",
        viewer,
        status_code,
        form=form,
        schedule=schedule,
        action=f"/ui/schedules/{schedule.id}/edit" if schedule else "/ui/schedules/new",
        priorities=[p.value for p in Priority],
        overlaps=OVERLAPS,
        kinds=KINDS,
        suggestions=_suggestions(session),
    )


@router.get("/schedules/new", response_class=HTMLResponse)
def new_schedule(request: Request, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    viewer.need(Role.MAINTAINER)
    return _show_form(request, viewer, session, ScheduleForm(), None)


@router.post("/schedules/new")
def create_schedule(request: Request, viewer: FormUser, session: SessionDep, form: PostedForm) -> Response:
    viewer.need(Role.MAINTAINER)
    body = create_body(session, form)
    if body is None:
        return _show_form(request, viewer, session, form, None, 422)
    try:
        api.create_schedule(body, viewer.user, session, Response())
    except AnvilError as exc:
        session.rollback()
        form.errors[field_of(exc.field)] = exc.detail
        return _show_form(request, viewer, session, form, None, exc.status_code)
    return RedirectResponse("/ui/schedules", status_code=303)


@router.get("/schedules/{schedule_id}/edit", response_class=HTMLResponse)
def edit_schedule(request: Request, schedule_id: str, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    viewer.need(Role.MAINTAINER)
    schedule = db.get_schedule(session, _ident(schedule_id))
    return _show_form(request, viewer, session, form_of(session, schedule), schedule)


@router.post("/schedules/{schedule_id}/edit")
def update_schedule(
    request: Request, schedule_id: str, viewer: FormUser, session: SessionDep, form: PostedForm
) -> Response:
    viewer.need(Role.MAINTAINER)
    schedule = db.get_schedule(session, _ident(schedule_id))
    body = update_body(session, form, schedule)
    if body is None:
        return _show_form(request, viewer, session, form, schedule, 422)
    if body.model_fields_set:  # a form sent back unchanged writes nothing
        try:
            api.update_schedule(schedule.id, body, viewer.user, session)
        except AnvilError as exc:
            session.rollback()
            form.errors[field_of(exc.field)] = exc.detail
            schedule = db.get_schedule(session, schedule.id)
            return _show_form(request, viewer, session, form, schedule, exc.status_code)
    return RedirectResponse("/ui/schedules", status_code=303)


# ---- pause, resume, trigger now ------------------------------------------------------------------


def _set_enabled(schedule_id: str, viewer: SignedIn, session: Session, enabled: bool) -> Response:
    viewer.need(Role.MAINTAINER)
    api.update_schedule(_ident(schedule_id), ScheduleUpdate(enabled=enabled), viewer.user, session)
    return RedirectResponse("/ui/schedules", status_code=303)


@router.post("/schedules/{schedule_id}/pause")
def pause(schedule_id: str, viewer: FormUser, session: SessionDep) -> Response:
    return _set_enabled(schedule_id, viewer, session, False)


@router.post("/schedules/{schedule_id}/resume")
def resume(schedule_id: str, viewer: FormUser, session: SessionDep) -> Response:
    """Enable it again: refused (409, saying why) while its test case or suite is deleted."""
    return _set_enabled(schedule_id, viewer, session, True)


@router.post("/schedules/{schedule_id}/trigger")
def trigger(schedule_id: str, viewer: FormUser, session: SessionDep) -> Response:
    """Run its target now; the browser lands on the execution started."""
    viewer.need(Role.TESTER)
    execution = api.trigger_schedule(_ident(schedule_id), viewer.user, session, Response())
    return RedirectResponse(f"/ui/executions/{execution.id}", status_code=303)

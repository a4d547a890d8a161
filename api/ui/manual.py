"""Manual testing, ``/ui/manual``: the testers' queue and performing one test step by step.

The queue is the API's (db/manual.py's ``manual_queue``: PAUSED manual executions, highest
priority first, then oldest), split into the tests waiting for someone, those the viewer took and
those other testers took; its list re-fetches itself (``/ui/manual/rows``) so a tester sees others
take tests. Taking, releasing and recording a step are form POSTs that run the API's own handlers
(api/routes/executions/manual.py), so who may take, the step order, the assignee check and the
status the test ends with are the API's rules.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Form, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role, StepStatus
from anvil.domain.states import Status
from anvil.errors import NotFound
from api.deps import SessionDep, SettingsDep
from api.execution_schemas import ExecutionPublic, StepResultCreate, Text
from api.routes.executions import manual as manual_api
from api.schemas import INT4_MAX
from api.ui.pages import PageRoute, render
from api.ui.runs import usernames
from api.ui.session import FormUser, PageUser, SignedIn
from db import executions as ex
from db import manual
from db.models import Execution, StepTrace

router = APIRouter(route_class=PageRoute)

QUEUE_SHOWN = 100
RESULTS = [s.value for s in manual.RESULTS]
TEXT_MAX: int = get_args(Text)[1].max_length  # the API's limit for "actual" and "comment"


@dataclass(frozen=True)
class Entry:
    """One test in the queue: the execution, its steps recorded of all, who took it and when."""

    execution: ExecutionPublic
    steps: int
    recorded: int
    taken_by: str | None
    taken_at: datetime | None


def _ident(execution_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(execution_id)
    except ValueError:
        raise NotFound(f"there is no execution {execution_id!r}") from None


def _recorded_counts(session: Session, rows: list[Execution]) -> dict[uuid.UUID, int]:
    """Steps with a result, per execution (its current attempt), in one query."""
    if not rows:
        return {}
    done = (
        select(StepTrace.execution_id, func.count())
        .join(
            Execution,
            (Execution.id == StepTrace.execution_id) & (Execution.attempt == StepTrace.attempt),
        )
        .where(
            StepTrace.execution_id.in_([r.id for r in rows]),
            StepTrace.status != StepStatus.NOT_RUN.value,
        )
        .group_by(StepTrace.execution_id)
    )
    return dict(session.execute(done).tuples().all())


def _queue(session: Session, viewer: SignedIn, limit: int) -> dict[str, Any]:
    rows = manual.manual_queue(session, limit=limit)
    names = usernames(session, {r.assigned_to for r in rows})
    recorded = _recorded_counts(session, rows)
    waiting: list[Entry] = []
    mine: list[Entry] = []
    others: list[Entry] = []
    for row in rows:
        entry = Entry(
            execution=ExecutionPublic.from_row(row),
            steps=len((row.case_snapshot.get("spec") or {}).get("steps") or []),
            recorded=recorded.get(row.id, 0),
            taken_by=names.get(row.assigned_to) if row.assigned_to else None,
            taken_at=row.assigned_at,
        )
        if row.assigned_to is None:
            waiting.append(entry)
        elif row.assigned_to == viewer.user.id:
            mine.append(entry)
        else:
            others.append(entry)
    return {
        "waiting": waiting,
        "mine": mine,
        "others": others,
        "more": len(rows) == limit,
        "may_take": viewer.may(Role.TESTER),
    }


@router.get("/manual", response_class=HTMLResponse)
def queue_page(
    request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    limit = min(QUEUE_SHOWN, settings.page_limit_max)
    return render(request, "manual_queue.html", viewer, **_queue(session, viewer, limit))


@router.get("/manual/rows", response_class=HTMLResponse)
def queue_rows(
    request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The queue's lists alone, for the live refresh."""
    limit = min(QUEUE_SHOWN, settings.page_limit_max)
    return render(request, "manual_lists.html", viewer, **_queue(session, viewer, limit))


def _manual_execution(session: Session, ident: uuid.UUID) -> Execution:
    execution = ex.get_execution(session, ident)
    if execution.case_snapshot.get("kind") != "manual":
        raise NotFound(f"execution {ident} is not a manual test; its page is /ui/executions/{ident}")
    return execution


def _perform(
    session: Session, viewer: SignedIn, execution: Execution, form: dict[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    """What the page of one manual test shows, and which of its forms the viewer may use."""
    steps = ex.list_steps(session, execution.id, attempt=execution.attempt)
    paused = execution.status == Status.PAUSED.value
    mine = paused and execution.assigned_to == viewer.user.id
    current = next((s for s in steps if s.status == StepStatus.NOT_RUN.value), None) if mine else None
    holder = (
        usernames(session, {execution.assigned_to}).get(execution.assigned_to)
        if execution.assigned_to
        else None
    )
    spec = execution.case_snapshot.get("spec") or {}
    return {
        "execution": ExecutionPublic.from_row(execution),
        "instructions": spec.get("instructions"),
        "steps": steps,
        "current": current,
        "paused": paused,
        "mine": mine,
        "taken_by": holder,
        "taken_at": execution.assigned_at,
        "may_take": paused and execution.assigned_to is None and viewer.may(Role.TESTER),
        # As the API: the assignee gives it back, an admin may take it back from anyone.
        "may_release": paused
        and execution.assigned_to is not None
        and (mine or viewer.user.role == Role.ADMIN.value),
        "results": RESULTS,
        "text_max": TEXT_MAX,
        "form": form,
        "errors": errors,
    }


@router.get("/manual/{execution_id}", response_class=HTMLResponse)
def perform_page(request: Request, execution_id: str, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    execution = _manual_execution(session, _ident(execution_id))
    return render(request, "manual_perform.html", viewer, **_perform(session, viewer, execution, {}, {}))


@router.post("/manual/{execution_id}/take")
def take(execution_id: str, viewer: FormUser, session: SessionDep) -> Response:
    viewer.need(Role.TESTER)
    ident = _ident(execution_id)
    manual_api.assign(ident, viewer.user, session)
    return RedirectResponse(f"/ui/manual/{ident}", status_code=303)


@router.post("/manual/{execution_id}/release")
def release(execution_id: str, viewer: FormUser, session: SessionDep) -> Response:
    viewer.need(Role.TESTER)
    manual_api.release(_ident(execution_id), viewer.user, session)
    return RedirectResponse("/ui/manual", status_code=303)


def _step_input(status: str, actual: str, comment: str) -> tuple[StepResultCreate | None, dict[str, str]]:
    """The form's values as the API's request body, or what is wrong with each field."""
    if status not in RESULTS:
        return None, {"status": f"choose one of {', '.join(RESULTS)}"}
    try:
        body = StepResultCreate(
            status=StepStatus(status), actual=actual.strip() or None, comment=comment.strip() or None
        )
    except ValidationError as exc:
        return None, {
            str(error["loc"][0]): f"at most {TEXT_MAX:,} characters"
            if error["type"] == "string_too_long"
            else str(error["msg"])
            for error in exc.errors()
            if error["loc"]
        }
    return body, {}


@router.post("/manual/{execution_id}/steps/{seq}", response_class=HTMLResponse)
def record(
    request: Request,
    execution_id: str,
    seq: Annotated[int, Path(ge=1, le=INT4_MAX)],
    viewer: FormUser,
    session: SessionDep,
    status: Annotated[str, Form()] = "",
    actual: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
) -> Response:
    """Record one step's result; the API completes the test with the last one."""
    viewer.need(Role.TESTER)
    ident = _ident(execution_id)
    body, errors = _step_input(status, actual, comment)
    if body is None:
        # Nothing written: the page again, with what was typed and what is wrong with it.
        execution = _manual_execution(session, ident)
        form = {"seq": str(seq), "status": status, "actual": actual, "comment": comment}
        context = _perform(session, viewer, execution, form, errors)
        return render(request, "manual_perform.html", viewer, 422, **context)
    manual_api.record_step(ident, seq, body, viewer.user, session)
    return RedirectResponse(f"/ui/manual/{ident}", status_code=303)

"""One execution, ``/ui/executions/{id}``: its header, steps, transitions and lineage; the part
that changes (``…/live``) re-fetches itself while the execution is active. Its actions are form
POSTs under it (``…/cancel``, ``…/retry``) running the API's own handlers, permission checks
included (api/routes/executions/control.py); its JUnit report is served here for the cookie."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.states import FINISHED, RETRYABLE, Status
from anvil.errors import Forbidden, NotFound
from api.deps import SessionDep
from api.execution_schemas import ExecutionPublic, RetryRequest
from api.junit import junit_xml
from api.routes.executions.control import cancel_execution, check_may_act, retry_execution
from api.routes.executions.junit import case_runs
from api.ui.pages import PageRoute, render
from api.ui.runs import usernames
from api.ui.session import FormUser, PageUser, SignedIn
from db import executions as ex
from db.models import Execution, StepTrace
from db.shard_runs import shard_steps

router = APIRouter(route_class=PageRoute)

CHILDREN_SHOWN = 50
_FINISHED = {s.value for s in FINISHED}
_RETRYABLE = {s.value for s in RETRYABLE}


def _ident(execution_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(execution_id)
    except ValueError:
        raise NotFound(f"there is no execution {execution_id!r}") from None


def _execution(session: Session, execution_id: str) -> Execution:
    return ex.get_execution(session, _ident(execution_id))


def _steps(session: Session, execution: Execution) -> list[StepTrace]:
    # As GET /api/v1/executions/{id}/steps: the latest attempt; a sharded case, its shards' steps.
    if execution.shard_plan is not None:
        return shard_steps(session, execution.id)
    return ex.list_steps(session, execution.id, attempt=None)


def actions(session: Session, viewer: SignedIn, execution: Execution) -> dict[str, bool]:
    """The buttons the viewer may use now; the POST handlers check the same again."""
    status = execution.status
    wanted = {
        "cancel": status not in _FINISHED,
        "retry": execution.test_case_id is not None and status in _FINISHED and status != Status.RETRYING,
        "retry_failed": execution.test_case_id is not None and status in _RETRYABLE,
    }
    if not viewer.may(Role.TESTER) or not any(wanted.values()):
        return dict.fromkeys(wanted, False)
    try:
        check_may_act(session, viewer.user, execution.id, action="act on")
    except Forbidden:
        return dict.fromkeys(wanted, False)
    return wanted


def _live(session: Session, viewer: SignedIn, execution: Execution) -> dict[str, Any]:
    return {
        "execution": ExecutionPublic.from_row(execution),
        "active": execution.status not in _FINISHED,
        "steps": _steps(session, execution),
        "transitions": ex.list_transitions(session, execution.id),
        "actions": actions(session, viewer, execution),
        "names": usernames(session, {execution.requested_by}),
    }


@router.get("/executions/{execution_id}", response_class=HTMLResponse)
def execution_page(
    request: Request, execution_id: str, viewer: PageUser, session: SessionDep
) -> HTMLResponse:
    execution = _execution(session, execution_id)
    parent = session.get(Execution, execution.parent_execution_id) if execution.parent_execution_id else None
    children, more = ex.list_executions(session, limit=CHILDREN_SHOWN, parent_execution_id=execution.id)
    return render(
        request,
        "execution.html",
        viewer,
        parent=ExecutionPublic.from_row(parent) if parent else None,
        children=[ExecutionPublic.from_row(child) for child in reversed(children)],
        more_children=more is not None,
        **_live(session, viewer, execution),
    )


@router.get("/executions/{execution_id}/live", response_class=HTMLResponse)
def execution_live(
    request: Request, execution_id: str, viewer: PageUser, session: SessionDep
) -> HTMLResponse:
    """The changing part of the page alone, for the live refresh."""
    return render(request, "_live.html", viewer, **_live(session, viewer, _execution(session, execution_id)))


@router.get("/executions/{execution_id}/junit.xml")
def junit(execution_id: str, _: PageUser, session: SessionDep) -> Response:
    """As GET /api/v1/executions/{id}/junit.xml, for the signed-in browser."""
    execution = _execution(session, execution_id)
    name = str((execution.case_snapshot or {}).get("name") or execution.id)
    return Response(
        junit_xml(name=name, runs=case_runs(session, execution)),
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="junit-{execution.id}.xml"'},
    )


def _tester(viewer: SignedIn) -> None:
    if not viewer.may(Role.TESTER):
        raise Forbidden(f"this needs the tester role or higher; {viewer.user.username} is {viewer.user.role}")


@router.post("/executions/{execution_id}/cancel")
def cancel(execution_id: str, viewer: FormUser, session: SessionDep) -> Response:
    _tester(viewer)
    ident = _ident(execution_id)
    cancel_execution(ident, viewer.user, session, body=None)
    return RedirectResponse(f"/ui/executions/{ident}", status_code=303)


@router.post("/executions/{execution_id}/retry")
def retry(
    execution_id: str,
    viewer: FormUser,
    session: SessionDep,
    failed_only: Annotated[bool, Form()] = False,
) -> Response:
    _tester(viewer)
    child = retry_execution(
        _ident(execution_id), viewer.user, session, Response(), body=RetryRequest(failed_only=failed_only)
    )
    return RedirectResponse(f"/ui/executions/{child.id}", status_code=303)

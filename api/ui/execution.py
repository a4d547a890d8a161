"""One execution, ``/ui/executions/{id}``: its header, steps, transitions and lineage; the part
that changes (``…/live``) re-fetches itself while the execution is active. Its actions are form
POSTs under it (``…/cancel``, ``…/retry``) running the API's own handlers, permission checks
included (api/routes/executions/control.py); its JUnit report is served here for the cookie."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.domain.results import StepView, test_key
from anvil.domain.states import FINISHED, RETRYABLE, Status
from anvil.errors import Forbidden, NotFound
from api.deps import SessionDep
from api.execution_schemas import ExecutionPublic, RetryRequest
from api.junit import junit_xml
from api.routes.executions.control import cancel_execution, check_may_act, retry_execution
from api.routes.executions.junit import case_runs
from api.ui.lineage_graph import lineage_svg
from api.ui.pages import PageRoute, render
from api.ui.runs import usernames
from api.ui.session import FormUser, PageUser, SignedIn
from db import executions as ex
from db.models import Execution, StepTrace, Test
from db.shard_runs import latest_shards

router = APIRouter(route_class=PageRoute)

CHILDREN_SHOWN = 50
STEPS_SHOWN = 200  # a page of steps: a 10,000-test run's page stays small and fast
FAILURES_SHOWN = 50
# Step statuses that failed the step (anvil/domain/results.py STEP_RESULT: failed or error).
_FAILED_STEP = {"failed", "error", "timeout", "undefined", "pending", "blocked"}
StepsFrom = Annotated[int | None, Query(ge=0, description="the first step shown (0-based)")]
_FINISHED = {s.value for s in FINISHED}
_RETRYABLE = {s.value for s in RETRYABLE}


def _ident(execution_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(execution_id)
    except ValueError:
        raise NotFound(f"there is no execution {execution_id!r}") from None


def _execution(session: Session, execution_id: str) -> Execution:
    return ex.get_execution(session, _ident(execution_id))


@dataclass(frozen=True)
class StepPage:
    """The steps shown: a page of at most STEPS_SHOWN (the newest while it runs, the first once it
    has finished, or from ``start``), loaded whole; the others are only counted, and their failures
    listed."""

    shown: list[StepTrace]
    total: int
    start: int
    chosen: bool  # the viewer picked the page (the live refresh keeps it)
    counts: dict[str, int]
    failures: list[tuple[int, int, str]]  # the start of the page that shows it, step id, name
    tests: dict[int, uuid.UUID]  # a shown step's test, for the link to its history

    @property
    def earlier(self) -> int | None:
        return max(0, self.start - STEPS_SHOWN) if self.start > 0 else None

    @property
    def later(self) -> int | None:
        following = self.start + STEPS_SHOWN
        return following if following < self.total else None


def step_page(session: Session, execution: Execution, start: int | None, active: bool) -> StepPage:
    # As GET /api/v1/executions/{id}/steps: the latest attempt; a sharded case, its shards' latest.
    sources = [shard.id for shard in latest_shards(session, execution.id)] if execution.shard_plan else []
    outline = ex.step_outline(session, sources or [execution.id])
    total = len(outline)
    chosen = start is not None
    if start is None:
        start = max(0, total - STEPS_SHOWN) if active else 0
    start = min(max(0, start), max(0, total - 1))
    ids = [step_id for step_id, _, _ in outline[start : start + STEPS_SHOWN]]
    loaded = {s.id: s for s in session.scalars(select(StepTrace).where(StepTrace.id.in_(ids)))} if ids else {}
    on_page = set(ids)
    failures = [
        (i - i % STEPS_SHOWN, step_id, name)
        for i, (step_id, status, name) in enumerate(outline)
        if status.lower() in _FAILED_STEP and step_id not in on_page
    ][:FAILURES_SHOWN]
    counts = dict(Counter(status for _, status, _ in outline))
    shown = [loaded[i] for i in ids]
    return StepPage(shown, total, start, chosen, counts, failures, _tests_of(session, execution, shown))


def _tests_of(session: Session, execution: Execution, shown: list[StepTrace]) -> dict[int, uuid.UUID]:
    """Step id -> the test whose history it belongs to (a pytest test, a BDD scenario, the case)."""
    if execution.test_case_id is None or not shown:
        return {}
    snapshot = execution.case_snapshot or {}
    keys = {
        step.id: test_key(snapshot, StepView(step.name, step.status, details=step.details)) for step in shown
    }
    wanted = {key for key in keys.values() if key}
    if not wanted:
        return {}
    rows = session.execute(
        select(Test.key, Test.id).where(Test.test_case_id == execution.test_case_id, Test.key.in_(wanted))
    ).all()
    found = {key: test_id for key, test_id in rows}
    return {step_id: found[key] for step_id, key in keys.items() if key in found}


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


def _live(session: Session, viewer: SignedIn, execution: Execution, start: int | None) -> dict[str, Any]:
    active = execution.status not in _FINISHED
    return {
        "execution": ExecutionPublic.from_row(execution),
        "active": active,
        "steps": step_page(session, execution, start, active),
        "transitions": ex.list_transitions(session, execution.id),
        "actions": actions(session, viewer, execution),
        "names": usernames(session, {execution.requested_by}),
        **_lineage(session, execution),
    }


def _lineage(session: Session, execution: Execution) -> dict[str, Any]:
    # Live too: members finish, retries and shards appear while the page is open.
    parent = session.get(Execution, execution.parent_execution_id) if execution.parent_execution_id else None
    children, more = ex.list_executions(session, limit=CHILDREN_SHOWN, parent_execution_id=execution.id)
    return {
        "parent": ExecutionPublic.from_row(parent) if parent else None,
        "children": [ExecutionPublic.from_row(child) for child in reversed(children)],
        "more_children": more is not None,
        "graph": lineage_svg(session, execution),
    }


@router.get("/executions/{execution_id}", response_class=HTMLResponse)
def execution_page(
    request: Request, execution_id: str, viewer: PageUser, session: SessionDep, steps: StepsFrom = None
) -> HTMLResponse:
    execution = _execution(session, execution_id)
    return render(request, "execution.html", viewer, **_live(session, viewer, execution, steps))


@router.get("/executions/{execution_id}/live", response_class=HTMLResponse)
def execution_live(
    request: Request, execution_id: str, viewer: PageUser, session: SessionDep, steps: StepsFrom = None
) -> HTMLResponse:
    """The changing part of the page alone, for the live refresh."""
    return render(
        request, "_live.html", viewer, **_live(session, viewer, _execution(session, execution_id), steps)
    )


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


@router.post("/executions/{execution_id}/cancel")
def cancel(execution_id: str, viewer: FormUser, session: SessionDep) -> Response:
    viewer.need(Role.TESTER)
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
    viewer.need(Role.TESTER)
    child = retry_execution(
        _ident(execution_id), viewer.user, session, Response(), body=RetryRequest(failed_only=failed_only)
    )
    return RedirectResponse(f"/ui/executions/{child.id}", status_code=303)

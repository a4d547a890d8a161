"""Suites and cases: the catalogue (``/ui/suites``: both lists, searched by name, one page at a time),
a case's page (``/ui/cases/{id}``: its definition and last runs) and a suite's page
(``/ui/suites/{id}``: its members and last runs, with their progress). The forms on these pages
(edit a case, submit a run) are handled in api/ui/catalog_forms.py; this module builds what the
pages show, for a first view and for a form shown again with its problems.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from anvil.domain.policy import resolve_retry_policy
from anvil.domain.runners import RUNNERS
from anvil.domain.shards import SHARDABLE
from anvil.errors import NotFound
from api.deps import SessionDep
from api.execution_schemas import ExecutionPublic
from api.routes.test_cases import public
from api.ui.pages import PageRoute, render
from api.ui.runs import is_active, usernames
from api.ui.session import PageUser, SignedIn
from db import catalog
from db import executions as ex
from db.cases import get_case
from db.models import TestCase, TestSuite
from db.suites import get_suite, resolve_members

router = APIRouter(route_class=PageRoute)

LIST_SIZE = 50
RUNS_SHOWN = 20
MEMBERS_SHOWN = 200
PRIORITIES = [p.value for p in Priority]
# A case's runs as people think of them: shards are parts of one run, shown on that run's page.
CASE_TRIGGERS = [t.value for t in TriggerKind if t is not TriggerKind.SHARD]


@dataclass
class FormState:
    """A form's values as shown (given, or the defaults) and what was wrong with them."""

    values: dict[str, str]
    problems: list[str] = field(default_factory=list)


def ident(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"there is no {what} {value!r}") from None


def find_case(session: Session, case_id: str) -> TestCase:
    return get_case(session, ident(case_id, "test case"))


def find_suite(session: Session, suite_id: str) -> TestSuite:
    return get_suite(session, ident(suite_id, "test suite"))


def pretty(value: Any, pad: str = "") -> str:
    """JSON indented for reading, a short list of plain values kept on one line (argv reads best so)."""
    inner = pad + "  "
    if isinstance(value, dict) and value:
        items = ",\n".join(
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {pretty(v, inner)}" for k, v in value.items()
        )
        return "{\n" + items + "\n" + pad + "}"
    flat = json.dumps(value, ensure_ascii=False)
    if (
        isinstance(value, list)
        and value
        and (len(flat) > 72 or any(isinstance(v, dict | list) for v in value))
    ):
        return "[\n" + ",\n".join(inner + pretty(v, inner) for v in value) + "\n" + pad + "]"
    return flat


# ---- the lists --------------------------------------------------------------------------------------


@router.get("/suites", response_class=HTMLResponse)
def catalogue(request: Request, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    given = {
        name: request.query_params.get(name, "").strip()[:200]
        for name in ("q", "kind", "suites_after", "cases_after")
    }
    kind = given["kind"] if given["kind"] in RUNNERS else ""
    suites, more_suites = catalog.by_name(
        session, TestSuite, search=given["q"], after=given["suites_after"] or None, limit=LIST_SIZE
    )
    cases, more_cases = catalog.by_name(
        session, TestCase, search=given["q"], after=given["cases_after"] or None, limit=LIST_SIZE, kind=kind
    )
    search = {k: v for k, v in (("q", given["q"]), ("kind", kind)) if v}

    def link(**after: str | None) -> str | None:
        if not any(after.values()):
            return None
        return "/ui/suites?" + urlencode({**search, **{k: v for k, v in after.items() if v}})

    return render(
        request,
        "catalog_list.html",
        viewer,
        given={**given, "kind": kind},
        kinds=list(RUNNERS),
        suites=suites,
        cases=cases,
        owners=usernames(session, {s.created_by for s in suites} | {c.created_by for c in cases}),
        more_suites=link(suites_after=more_suites, cases_after=given["cases_after"]),
        more_cases=link(cases_after=more_cases, suites_after=given["suites_after"]),
        paged=bool(given["suites_after"] or given["cases_after"]),
        first_url="/ui/suites?" + urlencode(search),
    )


# ---- a case ---------------------------------------------------------------------------------------


def _runs(session: Session, rows: list[Any], rows_url: str) -> dict[str, Any]:
    items = [ExecutionPublic.from_row(row) for row in rows]
    return {
        "items": items,
        "names": usernames(session, {row.requested_by for row in rows}),
        "live": any(is_active(item) for item in items),
        "rows_url": rows_url,
    }


def _case_runs(session: Session, case: TestCase) -> dict[str, Any]:
    rows, _ = ex.list_executions(session, limit=RUNS_SHOWN, test_case_id=case.id, trigger_kind=CASE_TRIGGERS)
    return _runs(session, rows, f"/ui/cases/{case.id}/runs")


def edit_defaults(case: TestCase) -> FormState:
    return FormState(
        {
            "name": case.name,
            "description": case.description or "",
            "tags": ", ".join(case.tags),
            "timeout_s": str(case.timeout_s),
            "spec": pretty(case.spec),
            "retry_policy": pretty(case.retry_policy) if case.retry_policy else "",
            "version": str(case.version),
        }
    )


def submit_defaults(priority: str = "") -> FormState:
    return FormState({"priority": priority, "revision": "", "branch": "", "environment": "", "shards": ""})


def case_page(
    request: Request,
    viewer: SignedIn,
    session: Session,
    case: TestCase,
    *,
    status_code: int = 200,
    edit: FormState | None = None,
    submit: FormState | None = None,
) -> HTMLResponse:
    """The case's page; ``edit`` or ``submit``: that form as it was sent, with its problems."""
    shown = public(case, viewer.user)  # env values masked below maintainer, as the API does
    may_edit = viewer.may(Role.MAINTAINER)
    return render(
        request,
        "catalog_case.html",
        viewer,
        status_code,
        case=shown,
        spec_json=pretty(shown.spec),
        file_map_json=pretty(shown.file_map) if shown.file_map else None,
        retry=resolve_retry_policy(case.retry_policy).as_dict(),
        own_retry=set(case.retry_policy or {}),
        owner=usernames(session, {case.created_by}).get(case.created_by) if case.created_by else None,
        shardable=case.kind in SHARDABLE,
        may_edit=may_edit,
        may_submit=viewer.may(Role.TESTER),
        edit=(edit or edit_defaults(case)) if may_edit else None,
        submit=submit or submit_defaults(Priority.NORMAL.value),
        priorities=PRIORITIES,
        saved=request.query_params.get("saved"),
        **_case_runs(session, case),
    )


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_view(request: Request, case_id: str, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    return case_page(request, viewer, session, find_case(session, case_id))


@router.get("/cases/{case_id}/runs", response_class=HTMLResponse)
def case_runs(request: Request, case_id: str, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    """The last runs' table body alone, for the live refresh."""
    return render(request, "_rows.html", viewer, **_case_runs(session, find_case(session, case_id)))


# ---- a suite --------------------------------------------------------------------------------------


def _suite_runs(session: Session, suite: TestSuite) -> dict[str, Any]:
    rows = catalog.suite_runs(session, suite.id, limit=RUNS_SHOWN)
    return _runs(session, rows, f"/ui/suites/{suite.id}/runs")


def suite_page(
    request: Request,
    viewer: SignedIn,
    session: Session,
    suite: TestSuite,
    *,
    status_code: int = 200,
    submit: FormState | None = None,
) -> HTMLResponse:
    """The suite's page; ``submit``: the submit form as it was sent, with its problems."""
    members = resolve_members(session, suite)  # what a submission would run now
    return render(
        request,
        "catalog_suite.html",
        viewer,
        status_code,
        suite=suite,
        members=members[:MEMBERS_SHOWN],
        members_total=len(members),
        retry_json=pretty(suite.retry_policy) if suite.retry_policy else None,
        owner=usernames(session, {suite.created_by}).get(suite.created_by) if suite.created_by else None,
        may_submit=viewer.may(Role.TESTER),
        submit=submit or submit_defaults(),
        priorities=PRIORITIES,
        **_suite_runs(session, suite),
    )


@router.get("/suites/{suite_id}", response_class=HTMLResponse)
def suite_view(request: Request, suite_id: str, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    return suite_page(request, viewer, session, find_suite(session, suite_id))


@router.get("/suites/{suite_id}/runs", response_class=HTMLResponse)
def suite_runs(request: Request, suite_id: str, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    """The last runs' table body alone, for the live refresh."""
    return render(request, "_rows.html", viewer, **_suite_runs(session, find_suite(session, suite_id)))

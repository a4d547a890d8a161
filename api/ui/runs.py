"""The runs page, ``/ui/executions``: executions newest first, filtered by a GET form, one keyset
page at a time (db/executions.py's list, as ``GET /api/v1/executions``). While a shown execution is
active, the table body re-fetches itself (``/ui/executions/rows``, same query) every few seconds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import TriggerKind
from anvil.domain.states import FINISHED, Status
from anvil.settings import Settings
from api.deps import SessionDep, SettingsDep
from api.execution_schemas import ExecutionPublic
from api.ui.pages import PageRoute, render
from api.ui.session import PageUser
from db import executions as ex
from db.models import Execution, TestCase, TestSuite, User

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 50
FIELDS = ("status", "target", "trigger", "branch", "who", "since", "until", "parent")
_FINISHED = {s.value for s in FINISHED}


@dataclass
class Filters:
    """The form's values as given, what they mean for the query, and what could not be used."""

    given: dict[str, str]
    query: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    nothing: bool = False  # a name that matches nothing: no rows, without a query


def _time(value: str, label: str, errors: list[str]) -> datetime | None:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        errors.append(f"{label}: give a date and time such as 2026-12-01T08:00 (UTC)")
        return None


def read_filters(request: Request, session: Session) -> Filters:
    given = {name: request.query_params.get(name, "").strip()[:255] for name in FIELDS}
    filters = Filters({k: v for k, v in given.items() if v})
    query, errors = filters.query, filters.errors
    if given["status"]:
        if given["status"] in {s.value for s in Status}:
            query["status"] = [given["status"]]
        else:
            errors.append(f"status: {given['status']!r} is not a status")
    if given["trigger"]:
        if given["trigger"] in {t.value for t in TriggerKind}:
            query["trigger_kind"] = [given["trigger"]]
        else:
            errors.append(f"trigger: {given['trigger']!r} is not a trigger kind")
    if given["branch"]:
        query["branch"] = given["branch"]
    if given["target"]:
        _target(session, given["target"], filters)
    if given["who"]:
        user_id = session.scalar(select(User.id).where(User.username == given["who"]))
        if user_id is None:
            filters.nothing = True
            errors.append(f"who: there is no user named {given['who']!r}")
        query["requested_by"] = user_id
    for name, key, label in (("since", "created_from", "from"), ("until", "created_to", "until")):
        if given[name]:
            query[key] = _time(given[name], label, errors)
    if given["parent"]:
        try:
            query["parent_execution_id"] = uuid.UUID(given["parent"])
        except ValueError:
            errors.append("parent: not an execution id")
    return filters


def _target(session: Session, name: str, filters: Filters) -> None:
    """A case's or a suite's name (a case first: names are unique within each kind)."""
    case_id = session.scalar(select(TestCase.id).where(TestCase.name == name, TestCase.deleted_at.is_(None)))
    if case_id is not None:
        filters.query["test_case_id"] = case_id
        return
    suite_id = session.scalar(
        select(TestSuite.id).where(TestSuite.name == name, TestSuite.deleted_at.is_(None))
    )
    if suite_id is not None:
        filters.query["test_suite_id"] = suite_id
        return
    filters.nothing = True
    filters.errors.append(f"case or suite: there is none named {name!r}")


def usernames(session: Session, ids: set[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return dict(session.execute(select(User.id, User.username).where(User.id.in_(wanted))).tuples().all())


def _page(
    request: Request, session: Session, settings: Settings
) -> tuple[Filters, list[ExecutionPublic], dict[uuid.UUID, str], str | None]:
    filters = read_filters(request, session)
    if filters.nothing or filters.errors:
        return filters, [], {}, None
    rows, next_cursor = ex.list_executions(
        session,
        limit=min(PAGE_SIZE, settings.page_limit_max),
        cursor=request.query_params.get("cursor") or None,
        **filters.query,
    )
    return (
        filters,
        [ExecutionPublic.from_row(r) for r in rows],
        usernames(session, {r.requested_by for r in rows}),
        next_cursor,
    )


def _context(
    request: Request, filters: Filters, items: list[ExecutionPublic], cursor: str | None
) -> dict[str, Any]:
    here = {**filters.given}
    if request.query_params.get("cursor"):
        here["cursor"] = request.query_params["cursor"]
    return {
        "filters": filters,
        "items": items,
        "live": any(item.status not in _FINISHED for item in items),
        "rows_url": "/ui/executions/rows?" + urlencode(here),
        "next_url": "/ui/executions?" + urlencode({**filters.given, "cursor": cursor}) if cursor else None,
        "first_url": "/ui/executions?" + urlencode(filters.given)
        if request.query_params.get("cursor")
        else None,
        "statuses": [s.value for s in Status],
        "triggers": [t.value for t in TriggerKind],
    }


@router.get("/executions", response_class=HTMLResponse)
def runs(request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    filters, items, names, cursor = _page(request, session, settings)
    status = 422 if filters.errors and not filters.nothing else 200
    return render(
        request, "runs.html", viewer, status, names=names, **_context(request, filters, items, cursor)
    )


@router.get("/executions/rows", response_class=HTMLResponse)
def rows(request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """The table body alone, for the live refresh."""
    filters, items, names, cursor = _page(request, session, settings)
    return render(request, "_rows.html", viewer, names=names, **_context(request, filters, items, cursor))


def is_active(execution: Execution | ExecutionPublic) -> bool:
    return execution.status not in _FINISHED

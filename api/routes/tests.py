"""Tests (what a team recognises from run to run) and their history; any logged-in role reads them.

Quarantine (POST/DELETE /api/v1/tests/{id}/quarantine) has a module of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.flaky import Result, Thresholds, judge
from api.deps import SessionDep, SettingsDep, Viewer
from api.history_params import NAMED_IN_QUERY, Ident, default_window
from api.history_schemas import (
    EvidencePublic,
    FlakyPublic,
    ResultPublic,
    TestDetail,
    TestPublic,
    WindowPublic,
)
from api.schemas import Page
from db import history
from db.flaky import flaky_ids
from db.models import TestCase, TestResult
from db.scopes import Scope, resolve_scope
from db.types import utcnow

router = APIRouter(prefix="/api/v1/tests", tags=["tests"])

Kind = Literal["pytest", "bdd", "generic", "manual"]
LastStatus = Literal["passed", "failed", "error", "skipped"]
MAX_RECENT = 50


@router.get(
    "",
    response_model=Page[TestPublic],
    responses=NAMED_IN_QUERY,
    description="Tests by name; follow next_cursor for more. Filters combine (all must hold).",
)
def list_tests(
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    case: Annotated[list[Ident] | None, Query(description="a test case name or id; repeatable")] = None,
    kind: Kind | None = None,
    status: Annotated[LastStatus | None, Query(description="the status of its last run")] = None,
    flaky: Annotated[
        bool | None, Query(description="flaky (or not) in the last ANVIL_FLAKY_WINDOW_DAYS days")
    ] = None,
    quarantined: Annotated[bool | None, Query(description="under quarantine now (or not)")] = None,
    search: Annotated[
        str | None, Query(min_length=1, max_length=200, description="part of the name or key")
    ] = None,
    recent: Annotated[int, Query(ge=0, le=MAX_RECENT, description="include each test's last N results")] = 0,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> dict[str, object]:
    now = utcnow()
    scope = resolve_scope(session, cases=case) if case else Scope()
    flaky_set = None
    if flaky is not None:  # judged over the default window, in the cases asked for
        flaky_set = flaky_ids(
            session, scope=scope, window=default_window(settings), thresholds=Thresholds.of(settings), now=now
        )
    items, next_cursor = history.list_tests(
        session,
        limit=min(limit, settings.page_limit_max),
        cursor=cursor,
        case_ids=scope.case_ids,
        kind=kind,
        last_status=status,
        search=search,
        quarantined=quarantined,
        only=flaky_set if flaky else None,
        excluding=flaky_set if flaky is False else None,
        now=now,
    )
    names = case_names(session, (t.test_case_id for t in items))
    latest = history.recent_results(session, [t.id for t in items], recent) if recent else {}
    return {
        "items": [
            TestPublic.from_row(
                t,
                now=now,
                case_name=names.get(t.test_case_id),
                recent=[ResultPublic.model_validate(r) for r in latest.get(t.id, [])] if recent else None,
            )
            for t in items
        ],
        "next_cursor": next_cursor,
    }


@router.get(
    "/{test_id}",
    response_model=TestDetail,
    description="One test, with whether it is flaky in the last ANVIL_FLAKY_WINDOW_DAYS days and why.",
)
def get_test(test_id: uuid.UUID, _: Viewer, session: SessionDep, settings: SettingsDep) -> TestDetail:
    now = utcnow()
    test = history.get_test(session, test_id)
    window = default_window(settings)
    since = window.since(now)
    r = TestResult
    rows = session.execute(
        select(r.status, r.revision, r.branch, r.recorded_at, r.execution_id, r.flaky_retry).where(
            r.test_id == test_id, r.recorded_at >= since
        )
    )
    verdict = judge([Result(*row) for row in rows], Thresholds.of(settings))
    shown = TestPublic.from_row(
        test, now=now, case_name=case_names(session, [test.test_case_id]).get(test.test_case_id)
    )
    return TestDetail(
        **shown.model_dump(),
        flaky=FlakyPublic(
            flaky=verdict.flaky,
            window=WindowPublic.of(window, since),
            evidence=[EvidencePublic.of(e) for e in verdict.evidence],
        ),
    )


@router.get(
    "/{test_id}/history",
    response_model=Page[ResultPublic],
    description="The test's results, newest first, with execution, revision, branch, duration and status.",
)
def test_history(
    test_id: uuid.UUID,
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> dict[str, object]:
    history.get_test(session, test_id)
    items, next_cursor = history.test_history(
        session, test_id, limit=min(limit, settings.page_limit_max), cursor=cursor
    )
    return {"items": items, "next_cursor": next_cursor}


def case_names(session: Session, case_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    ids = set(case_ids)
    if not ids:
        return {}
    return dict(
        session.execute(select(TestCase.id, TestCase.name).where(TestCase.id.in_(ids))).tuples().all()
    )

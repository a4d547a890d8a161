"""Statistics over a window and scope, the flaky tests with their evidence, the slowest tests.

Window: ``window=30d`` (or 12h, 2w) or ``runs=N`` (the last N runs in scope); by default the last
ANVIL_FLAKY_WINDOW_DAYS days. Scope: ``case`` and ``suite`` (names or ids, repeatable), ``tag``,
``branch``. Any logged-in role may read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from anvil.domain.flaky import Thresholds
from anvil.domain.windows import Window
from api.deps import SessionDep, SettingsDep, Viewer
from api.history_params import NAMED_IN_QUERY, ScopeParams, WindowParam
from api.history_schemas import (
    EvidencePublic,
    FlakyList,
    FlakyTestPublic,
    SlowestPublic,
    StatsPublic,
    TestFigurePublic,
    ThresholdsPublic,
    WindowPublic,
)
from api.routes.tests import case_names
from db import stats as stats_db
from db.flaky import FlakyTest, flaky_tests
from db.scopes import Scope, result_filters
from db.test_results import quarantined
from db.types import utcnow

router = APIRouter(prefix="/api/v1/stats", tags=["statistics"])


@router.get("", response_model=StatsPublic, responses=NAMED_IN_QUERY)
def get_stats(
    _: Viewer,
    session: SessionDep,
    settings: SettingsDep,
    window: WindowParam,
    scope: ScopeParams,
    top: Annotated[int, Query(ge=1, le=100, description="length of the slowest and most-failing lists")] = 10,
) -> StatsPublic:
    """Runs, pass/failure/flaky rates, duration p50/p95, slowest and most-failing tests, a per-day trend."""
    resolved, shown = scope.resolve(session)
    found = stats_db.stats(
        session, scope=resolved, window=window, now=utcnow(), thresholds=Thresholds.of(settings), top=top
    )
    return StatsPublic.model_validate(
        {
            **{k: getattr(found, k) for k in StatsPublic.model_fields if hasattr(found, k)},
            "window": WindowPublic.of(window, found.since),
            "scope": shown,
            "slowest": [TestFigurePublic.model_validate(f) for f in found.slowest],
            "most_failing": [TestFigurePublic.model_validate(f) for f in found.most_failing],
        }
    )


@router.get("/flaky-tests", response_model=FlakyList, responses=NAMED_IN_QUERY)
def get_flaky_tests(
    _: Viewer, session: SessionDep, settings: SettingsDep, window: WindowParam, scope: ScopeParams
) -> FlakyList:
    """The flaky tests, strongest evidence first; each with its evidence: which executions, which
    revision or branch, and the flip rate (thresholds: ANVIL_FLAKY_FLIP_RATE, _MIN_FLIPS, _MIN_RUNS)."""
    now = utcnow()
    resolved, shown = scope.resolve(session)
    thresholds = Thresholds.of(settings)
    found = flaky_tests(session, scope=resolved, window=window, thresholds=thresholds, now=now)
    return FlakyList(
        window=WindowPublic.of(window, _since(session, resolved, window, now)),
        scope=shown,
        thresholds=ThresholdsPublic.of(thresholds),
        items=flaky_public(session, found, now),
    )


def flaky_public(session: Session, found: Sequence[FlakyTest], now: datetime) -> list[FlakyTestPublic]:
    names = case_names(session, (f.test.test_case_id for f in found))
    return [
        FlakyTestPublic(
            test_id=f.test.id,
            test_case_id=f.test.test_case_id,
            case_name=names.get(f.test.test_case_id),
            key=f.test.key,
            name=f.test.name,
            quarantined=quarantined(f.test.quarantined_at, f.test.quarantine_expires_at, now),
            runs=f.runs,
            failures=f.failures,
            evidence=[EvidencePublic.of(e) for e in f.verdict.evidence],
        )
        for f in found
    ]


@router.get("/slowest", response_model=SlowestPublic, responses=NAMED_IN_QUERY)
def get_slowest(
    _: Viewer,
    session: SessionDep,
    window: WindowParam,
    scope: ScopeParams,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> SlowestPublic:
    """The tests with the longest mean duration in the window, slowest first."""
    now = utcnow()
    resolved, shown = scope.resolve(session)
    found = stats_db.slowest(session, scope=resolved, window=window, now=now, limit=limit)
    return SlowestPublic(
        window=WindowPublic.of(window, _since(session, resolved, window, now)),
        scope=shown,
        items=[TestFigurePublic.model_validate(f) for f in found],
    )


def _since(session: SessionDep, scope: Scope, window: Window, now: datetime) -> datetime | None:
    """The window's start (for a window of runs, one more short walk back over the index)."""
    return result_filters(session, scope, window, now)[1]

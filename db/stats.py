"""Statistics of test results in a scope and window: runs, pass/failure/flaky rates, duration
percentiles, the slowest and most-failing tests, and a per-day trend.

Three grouped passes over the window's results (counts per test; counts per day, execution and
status; the duration percentiles: ``percentile_cont`` on PostgreSQL, computed here on SQLite), then
the flaky detection on the tests that failed (db/flaky.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from anvil.domain.flaky import Thresholds
from anvil.domain.results import RESULT_STATUSES
from anvil.domain.windows import Window
from db.flaky import RESULTS, Tally, flaky_list, tallies
from db.models import Test, TestResult
from db.scopes import Scope, result_filters


@dataclass(frozen=True)
class TestFigure:
    """One test in a ranking, with its figures in the window."""

    test_id: uuid.UUID
    test_case_id: uuid.UUID
    key: str
    name: str
    runs: int
    failures: int
    failure_rate: float | None
    mean_s: float | None
    max_s: float | None


@dataclass(frozen=True)
class Day:
    day: date
    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Stats:
    since: datetime | None  # the window's start (None: no result in a window of runs)
    runs: int  # distinct executions
    tests: int  # distinct tests run
    results: int
    passed: int
    failed: int
    error: int
    skipped: int
    pass_rate: float | None  # of the results that ran (skipped left out)
    failure_rate: float | None
    flaky_tests: int
    flaky_rate: float | None  # flaky tests / tests run
    duration_p50_s: float | None
    duration_p95_s: float | None
    slowest: list[TestFigure]
    most_failing: list[TestFigure]
    trend: list[Day]


def stats(
    session: Session,
    *,
    scope: Scope,
    window: Window,
    now: datetime,
    thresholds: Thresholds | None = None,
    top: int = 10,
) -> Stats:
    filters, since = result_filters(session, scope, window, now)
    counts = tallies(session, filters)
    trend, runs = _trend_and_runs(session, filters)
    p50, p95 = _percentiles(session, filters)
    failing = [test_id for test_id, t in counts.items() if t.failures or t.retry_passes]
    flaky = flaky_list(session, filters, failing, thresholds or Thresholds())
    total = {s: sum(getattr(t, s) for t in counts.values()) for s in RESULT_STATUSES}
    ran = total["passed"] + total["failed"] + total["error"]
    return Stats(
        since=since,
        runs=runs,
        tests=len(counts),
        results=sum(total.values()),
        **total,
        pass_rate=_ratio(total["passed"], ran),
        failure_rate=_ratio(total["failed"] + total["error"], ran),
        flaky_tests=len(flaky),
        flaky_rate=_ratio(len(flaky), len(counts)),
        duration_p50_s=p50,
        duration_p95_s=p95,
        slowest=_figures(session, counts, _slowest(counts, top)),
        most_failing=_figures(session, counts, _most_failing(counts, top)),
        trend=trend,
    )


def slowest(
    session: Session, *, scope: Scope, window: Window, now: datetime, limit: int = 20
) -> list[TestFigure]:
    """The tests with the longest mean duration in the window, slowest first."""
    counts = tallies(session, result_filters(session, scope, window, now)[0])
    return _figures(session, counts, _slowest(counts, limit))


def _slowest(counts: dict[uuid.UUID, Tally], limit: int) -> list[uuid.UUID]:
    timed = [(t.duration_sum / t.duration_n, i) for i, t in counts.items() if t.duration_n]
    return [i for _, i in sorted(timed, key=lambda x: (-x[0], x[1]))[:limit]]


def _most_failing(counts: dict[uuid.UUID, Tally], limit: int) -> list[uuid.UUID]:
    failing = [(t.failures, t.failures / (t.runs - t.skipped), i) for i, t in counts.items() if t.failures]
    return [i for *_, i in sorted(failing, key=lambda x: (-x[0], -x[1], x[2]))[:limit]]


def _figures(session: Session, counts: dict[uuid.UUID, Tally], ids: list[uuid.UUID]) -> list[TestFigure]:
    if not ids:
        return []
    tests = {t.id: t for t in session.scalars(select(Test).where(Test.id.in_(ids)))}
    figures = []
    for i in ids:
        t, test = counts[i], tests.get(i)
        if test is None:
            continue
        figures.append(
            TestFigure(
                test_id=i,
                test_case_id=test.test_case_id,
                key=test.key,
                name=test.name,
                runs=t.runs,
                failures=t.failures,
                failure_rate=_ratio(t.failures, t.runs - t.skipped),
                mean_s=round(t.duration_sum / t.duration_n, 6) if t.duration_n else None,
                max_s=t.duration_max,
            )
        )
    return figures


def _percentiles(
    session: Session, filters: Sequence[ColumnElement[bool]]
) -> tuple[float | None, float | None]:
    """p50 and p95 of the results' durations."""
    d = TestResult.duration_s
    if session.get_bind().dialect.name == "postgresql":
        p50, p95 = session.execute(
            select(
                func.percentile_cont(0.5).within_group(d), func.percentile_cont(0.95).within_group(d)
            ).where(*filters)
        ).one()
        return _round(p50), _round(p95)
    durations = sorted(v for v in session.scalars(select(d).where(*filters, d.is_not(None))) if v is not None)
    return _round(percentile(durations, 0.5)), _round(percentile(durations, 0.95))


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks, as PostgreSQL's ``percentile_cont``."""
    if not ordered:
        return None
    at = fraction * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _trend_and_runs(session: Session, filters: Sequence[ColumnElement[bool]]) -> tuple[list[Day], int]:
    """Results per day (UTC) and status, and the distinct executions, from one grouped pass. An
    execution's results share its finish time, so grouping by (recorded_at, execution, status)
    returns a few rows per run, and no function runs per result row."""
    r = RESULTS.c
    days: dict[date, dict[str, int]] = {}
    executions = set()
    for at, execution_id, status, count in session.connection().execute(
        select(r.recorded_at, r.execution_id, r.status, func.count())
        .where(*filters)
        .group_by(r.recorded_at, r.execution_id, r.status)
    ):
        per_status = days.setdefault(at.astimezone(UTC).date(), {})
        per_status[status] = per_status.get(status, 0) + count
        executions.add(execution_id)
    return [Day(d, **days[d]) for d in sorted(days)], len(executions)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None

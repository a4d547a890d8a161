"""Statistics of test results in a scope and window: runs, pass/failure/flaky rates, duration
percentiles, the slowest and most-failing tests, and a per-day trend.

Nothing here reads every result of a window: runs, counts, the trend and the duration percentiles
come from the runs' rollups (one row per execution, written with its results: db/test_results.py;
percentiles from merged histograms, within 5 %); the failing tests from the partial index of failing
results, then flaky detection on those (db/flaky.py); the slowest from the tests each run kept as its
slowest. Only the tests named in the answer have their results counted, through their index.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, Float, Integer, cast, func, select, text, true
from sqlalchemy.orm import Session

from anvil.domain.flaky import Thresholds
from anvil.domain.histograms import merge, quantile
from anvil.domain.results import FAILING, RESULT_STATUSES
from anvil.domain.windows import Window
from db.flaky import Tally, failing_tests, flaky_count, tallies
from db.models import FAILING_RESULTS, Test, TestResult
from db.scopes import Scope, result_filters
from db.sql import chunks
from db.test_results import ROLLUPS, SLOWEST_KEPT, TESTS


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
    runs = run_figures(session, scope, since, slow=3 * top)
    total = {s: sum(getattr(day, s) for day in runs.trend) for s in RESULT_STATUSES}
    failing = failing_tests(session, filters)
    flaky = flaky_count(session, filters, failing, thresholds or Thresholds())
    if top <= SLOWEST_KEPT:
        slow = _test_ids(session, runs.slowest)
        counts = _tallies_of(session, filters, [*_failing_candidates(session, filters, top), *slow])
    else:  # longer lists than the rollups keep: count every result of the window
        counts = tallies(session, filters)
        slow = list(counts)
    tests = _tests_run(session, scope, since, filters)
    ran = total["passed"] + total["failed"] + total["error"]
    return Stats(
        since=since,
        runs=runs.runs,
        tests=tests,
        results=sum(total.values()),
        **total,
        pass_rate=_ratio(total["passed"], ran),
        failure_rate=_ratio(total["failed"] + total["error"], ran),
        flaky_tests=flaky,
        flaky_rate=_ratio(flaky, tests),
        duration_p50_s=_round(quantile(runs.durations, 0.5)),
        duration_p95_s=_round(quantile(runs.durations, 0.95)),
        slowest=_figures(session, counts, _slowest({i: counts[i] for i in slow if i in counts}, top)),
        most_failing=_figures(
            session, counts, _most_failing({i: counts[i] for i in failing if i in counts}, top)
        ),
        trend=runs.trend,
    )


def slowest(
    session: Session, *, scope: Scope, window: Window, now: datetime, limit: int = 20
) -> list[TestFigure]:
    """The tests with the longest mean duration in the window, slowest first."""
    filters, since = result_filters(session, scope, window, now)
    if limit > SLOWEST_KEPT:  # beyond what the rollups keep: count every result
        counts = tallies(session, filters)
        return _figures(session, counts, _slowest(counts, limit))
    candidates = _test_ids(session, run_figures(session, scope, since, slow=3 * limit).slowest)
    counts = _tallies_of(session, filters, candidates)
    return _figures(session, counts, _slowest(counts, limit))


@dataclass(frozen=True)
class RunFigures:
    """What the runs' rollups say of a scope and window."""

    runs: int
    trend: list[Day]  # results per day and status
    durations: Counter[int]  # the merged duration histogram (anvil/domain/histograms.py)
    # (case, key) of the tests likely to be the slowest on average, likeliest first: each run kept
    # its SLOWEST_KEPT slowest tests; ranked by their mean there. That misses only a test slow on
    # average yet seldom among the SLOWEST_KEPT slowest of a run while faster tests often are.
    slowest: list[tuple[uuid.UUID, str]]


def run_figures(session: Session, scope: Scope, since: datetime | None, *, slow: int) -> RunFigures:
    """The runs in scope and window from their rollups (db/test_results.py writes one per run),
    with ``slow`` candidates for the slowest tests. On PostgreSQL the JSON of the rollups is
    summed in the database (reading six hundred runs' histograms in Python cost more than the rest)."""
    r = ROLLUPS.c
    where: list[ColumnElement[bool]] = []
    if scope.case_ids is not None:
        where.append(r.test_case_id.in_(scope.case_ids))
    if scope.branch is not None:
        where.append(r.branch == scope.branch)
    if since is not None:
        where.append(r.recorded_at >= since)
    if session.get_bind().dialect.name != "postgresql":
        return _run_figures_here(session, where, slow)
    day = func.date_trunc("day", func.timezone("UTC", r.recorded_at))
    per_day = session.execute(
        select(day, func.sum(r.passed), func.sum(r.failed), func.sum(r.error), func.sum(r.skipped))
        .where(*where)
        .group_by(day)
        .order_by(day)
    ).all()
    bucket = func.jsonb_each_text(r.durations).table_valued("key", "value").lateral()
    durations = Counter(
        {
            int(key): int(count)
            for key, count in session.execute(
                select(bucket.c.key, func.sum(cast(bucket.c.value, Integer)))
                .select_from(ROLLUPS.join(bucket, true()))
                .where(*where)
                .group_by(bucket.c.key)
            )
        }
    )
    entry = func.jsonb_array_elements(r.slowest).table_valued("value").lateral()
    mean = func.avg(cast(entry.c.value.op("->>")(1), Float))
    key = entry.c.value.op("->>")(0)
    slowest = [
        (case_id, str(k))
        for case_id, k in session.execute(
            select(r.test_case_id, key)
            .select_from(ROLLUPS.join(entry, true()))
            .where(*where)
            .group_by(r.test_case_id, key)
            .order_by(mean.desc())
            .limit(slow)
        )
    ]
    # A sharded run has a rollup per shard: runs are counted by the run each rollup belongs to.
    runs = session.scalar(
        select(func.count(func.distinct(func.coalesce(r.run_execution_id, r.execution_id)))).where(*where)
    )
    return RunFigures(
        runs=int(runs or 0),
        trend=[Day(d.date(), int(p), int(f), int(e), int(s)) for d, p, f, e, s in per_day],
        durations=durations,
        slowest=slowest,
    )


def _run_figures_here(session: Session, where: list[ColumnElement[bool]], slow: int) -> RunFigures:
    """run_figures on SQLite: the rollups read and summed here."""
    r = ROLLUPS.c
    rows = session.execute(
        select(
            r.recorded_at,
            r.passed,
            r.failed,
            r.error,
            r.skipped,
            r.durations,
            r.test_case_id,
            r.slowest,
            func.coalesce(r.run_execution_id, r.execution_id),
        ).where(*where)
    ).all()
    days: dict[date, Counter[str]] = defaultdict(Counter)
    seen: dict[tuple[uuid.UUID, str], list[float]] = defaultdict(list)
    for at, passed, failed, error, skipped, _, case_id, kept, _run in rows:
        days[at.astimezone(UTC).date()].update(passed=passed, failed=failed, error=error, skipped=skipped)
        for key, duration in kept:
            seen[(case_id, key)].append(duration)
    ranked = sorted(seen, key=lambda k: -sum(seen[k]) / len(seen[k]))
    return RunFigures(
        runs=len({row[8] for row in rows}),
        trend=[Day(d, **days[d]) for d in sorted(days)],
        durations=merge(row[5] for row in rows),
        slowest=ranked[:slow],
    )


def _test_ids(session: Session, wanted_keys: Sequence[tuple[uuid.UUID, str]]) -> list[uuid.UUID]:
    """The ids of the tests named by (case, key)."""
    wanted = set(wanted_keys)
    keys = sorted({key for _, key in wanted})
    t = TESTS.c
    found: list[uuid.UUID] = []
    for chunk in chunks(keys):
        for test_id, case_id, key in session.execute(
            select(t.id, t.test_case_id, t.key).where(t.key.in_(chunk))
        ):
            if (case_id, key) in wanted:
                found.append(test_id)
    return found


def _failing_candidates(
    session: Session, filters: Sequence[ColumnElement[bool]], limit: int
) -> list[uuid.UUID]:
    """The tests that may be among the ``limit`` most failing: every test with at least as many
    failures as the ``limit``-th (counted on the partial index of failing results)."""
    failing = sorted(
        session.connection().execute(
            select(TestResult.test_id, func.count())
            .where(*filters, text(FAILING_RESULTS), TestResult.status.in_(sorted(FAILING)))
            .group_by(TestResult.test_id)
        ),
        key=lambda row: -row[1],
    )
    if len(failing) <= limit:
        return [test_id for test_id, _ in failing]
    least = failing[limit - 1][1]
    return [test_id for test_id, count in failing if count >= least]


def _tallies_of(
    session: Session, filters: Sequence[ColumnElement[bool]], test_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Tally]:
    """Counts in the window of these tests only, read through the (test_id, recorded_at) index."""
    ids = list(dict.fromkeys(test_ids))
    counts: dict[uuid.UUID, Tally] = {}
    for chunk in chunks(ids):
        counts.update(tallies(session, [*filters, TestResult.test_id.in_(chunk)]))
    return counts


def _tests_run(
    session: Session, scope: Scope, since: datetime | None, filters: Sequence[ColumnElement[bool]]
) -> int:
    """Distinct tests with a result in scope and window. Without a branch, the tests' last sighting
    answers it (a test row is touched at least hourly when it runs); a branch needs the results."""
    if scope.branch is not None:
        return session.scalar(select(func.count(func.distinct(TestResult.test_id))).where(*filters)) or 0
    t = TESTS.c
    where: list[ColumnElement[bool]] = [] if since is None else [t.last_seen_at >= since - timedelta(hours=1)]
    if scope.case_ids is not None:
        where.append(t.test_case_id.in_(scope.case_ids))
    return session.scalar(select(func.count()).select_from(TESTS).where(*where)) or 0


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


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None

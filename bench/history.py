"""Test history at scale: seed 1,000,000 test results, time the history queries and the result write.

    .venv/bin/python -m bench.history [--keep] [--reuse] [--samples 30]

Seeds (with COPY) a database of its own (``anvil_bench_history``, dropped afterwards unless
``--keep``; ``--reuse`` measures a kept one again, though each run's write measurement adds 62 runs
of 1,000 results to its window, so later figures drift up): 20 pytest cases × 250 tests (5,000 tests),
200 nightly runs per case over 200 days (1,000,000 results), 80 % on main and the rest on feature
branches, a re-run of the same revision every tenth night, 3 % flaky tests (fail 30 % of runs),
1 % broken for a stretch, 2 % skipped, 1 % slow (10–60 s), durations log-normal. Then prints
p50/p95 over ``--samples`` runs of each query the API serves, and what recording a finished
1,000-test pytest execution's results adds to its finish. Figures go in the README.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import machine_info  # noqa: E402

DBNAME = "anvil_bench_history"
CASES, TESTS_PER_CASE, RUNS = 20, 250, 200
ROLLUP_COLUMNS = (
    "execution_id", "test_case_id", "branch", "recorded_at", "passed", "failed", "error", "skipped",
    "durations", "slowest",
)  # fmt: skip
RESULT_COLUMNS = (
    "test_id", "test_case_id", "execution_id", "root_execution_id", "run_id", "trigger_kind", "attempt",
    "retry_index", "status", "detail", "duration_s", "revision", "branch", "environment", "flaky_retry",
    "quarantined", "recorded_at",
)  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg-admin", default=os.environ.get("ANVIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument("--reuse", action="store_true", help="measure a database kept by --keep")
    return parser.parse_args()


def seed(url: str, now: datetime, rng: random.Random) -> dict[str, Any]:
    """The cases, tests and results, by COPY; returns ids the measurements use."""
    cases = [uuid.uuid4() for _ in range(CASES)]
    tests: list[tuple[uuid.UUID, uuid.UUID, str, str]] = []
    behaviour: dict[uuid.UUID, tuple[str, float, float]] = {}
    for c, case_id in enumerate(cases):
        for t in range(TESTS_PER_CASE):
            module = f"tests/area{c}/test_mod{t // 25}.py"
            key = f"{module}::test_{t}" + (f"[param-{t % 3}]" if t % 7 == 0 else "")
            test_id = uuid.uuid4()
            tests.append((test_id, case_id, key, module))
            roll = rng.random()
            kind = ("flaky" if roll < 0.03 else "broken" if roll < 0.04 else "skipped" if roll < 0.06
                    else "slow" if roll < 0.07 else "stable")  # fmt: skip
            median = rng.uniform(10, 60) if kind == "slow" else rng.lognormvariate(-2.5, 1.0)
            behaviour[test_id] = (kind, median, rng.uniform(0, 0.8))
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO test_cases (id, name, kind, spec, tags, timeout_s, version, created_at, updated_at) "
            "SELECT id, 'bench-case-' || n, 'pytest', '{\"workspace\": \"w\", \"args\": []}', "
            "CASE WHEN n %% 2 = 0 THEN '[\"billing\"]'::jsonb ELSE '[]'::jsonb END, 900, 1, now(), now() "
            "FROM unnest(%s::uuid[]) WITH ORDINALITY AS c(id, n)",
            (cases,),
        )
        with cur.copy(
            "COPY tests (id, test_case_id, key, kind, name, file, first_seen_at, last_seen_at) FROM STDIN"
        ) as copy:
            first = now - timedelta(days=RUNS)
            for test_id, case_id, key, module in tests:
                copy.write_row((test_id, case_id, key, "pytest", key, module, first, now))
        rows = 0
        rollups = []
        with cur.copy(f"COPY test_results ({', '.join(RESULT_COLUMNS)}) FROM STDIN") as copy:
            for run in range(RUNS):
                day = now - timedelta(days=RUNS - run, hours=-2)
                branch = "main" if rng.random() < 0.8 else f"feature/f{run % 17}"
                # Every tenth night re-runs the revision of the night before.
                revision = f"{run - 1 if run % 10 == 0 and run else run:040x}"
                for index, case_id in enumerate(cases):
                    execution_id = uuid.uuid4()
                    at = day + timedelta(minutes=index)
                    ran = []
                    for test_id, test_case, key, _module in tests[
                        index * TESTS_PER_CASE : (index + 1) * TESTS_PER_CASE
                    ]:
                        kind, median, _ = behaviour[test_id]
                        status = "passed"
                        if kind == "flaky" and rng.random() < 0.3:
                            status = "failed"
                        elif kind == "broken" and (run // 20) % 3 == 0:
                            status = "failed"
                        elif kind == "skipped":
                            status = "skipped"
                        duration = round(median * rng.lognormvariate(0, 0.2), 6)
                        row = (
                            test_id,
                            test_case,
                            execution_id,
                            execution_id,
                            None,
                            "scheduled",
                            1,
                            0,
                            status,
                        )
                        copy.write_row((*row, None, duration, revision, branch, None, False, False, at))
                        ran.append((key, status, duration))
                        rows += 1
                    rollups.append(_rollup(execution_id, case_id, branch, at, ran))
        with cur.copy(f"COPY result_rollups ({', '.join(ROLLUP_COLUMNS)}) FROM STDIN") as copy:
            for rollup in rollups:
                copy.write_row(rollup)
    # A BRIN index summarises the block ranges filled after it was made only when vacuumed
    # (autovacuum does so in production); without it every window query reads the whole table.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE tests")
        conn.execute("VACUUM ANALYZE test_results")
        conn.execute("VACUUM ANALYZE result_rollups")
    return {"cases": cases, "tests": [t[0] for t in tests], "results": rows}


def _rollup(
    execution_id: uuid.UUID, case_id: uuid.UUID, branch: str, at: datetime, ran: list[Any]
) -> tuple[Any, ...]:
    """The run's result_rollups row, as db/test_results.py writes it."""
    from psycopg.types.json import Jsonb

    from anvil.domain.histograms import histogram
    from db.test_results import SLOWEST_KEPT

    counts = Counter(status for _, status, _ in ran)
    slowest = sorted(ran, key=lambda r: (-r[2], r[0]))[:SLOWEST_KEPT]
    return (
        execution_id, case_id, branch, at,
        counts["passed"], counts["failed"], counts["error"], counts["skipped"],
        Jsonb(histogram(d for _, _, d in ran)), Jsonb([[key, d] for key, _, d in slowest]),
    )  # fmt: skip


def timed(fn: Callable[[], Any], samples: int) -> dict[str, float]:
    fn()  # warm the caches once
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50": statistics.median(times), "p95": times[max(0, int(len(times) * 0.95) - 1)]}


def measure_write(samples: int) -> dict[str, float]:
    """Recording a finished 1,000-test pytest execution's results (the steps already written, as the
    heartbeat does while the tests run): the cost the commit reaction adds to the finish."""
    from anvil.domain.enums import Priority, TriggerKind
    from anvil.domain.states import Status
    from anvil.domain.steps import StepRecord
    from db import changes
    from db.attempts import claim, finish, renew_lease
    from db.executions import NewExecution, Source, case_snapshot, insert_executions
    from db.models import TestCase
    from db.session import new_session

    with new_session() as s, s.begin():
        case = TestCase(id=uuid.uuid4(), name=f"write-{uuid.uuid4().hex[:6]}", kind="pytest",
                        spec={"workspace": "w", "args": []}, tags=[], timeout_s=900)  # fmt: skip
        s.add(case)
    now = datetime.now(UTC)
    steps = [
        StepRecord(
            seq=i + 1,
            name=f"tests/test_w{i // 50}.py::test_{i}",
            status="failed" if i % 97 == 0 else "passed",
            started_at=now,
            finished_at=now,
            duration_s=0.01,
            details={"kind": "test"},
        )  # fmt: skip
        for i in range(1000)
    ]

    def finished_execution() -> tuple[uuid.UUID, int]:
        """A claimed execution of the case whose 1,000 steps are written, ready to finish."""
        item = NewExecution(
            snapshot=case_snapshot(case), test_case_id=case.id, priority=Priority.NORMAL,
            trigger_kind=TriggerKind.CI, requested_by=None, source=Source("abc", "main"),
        )  # fmt: skip
        with new_session() as s, s.begin():
            (execution,) = insert_executions(s, [item], actor="bench", max_attempts=3)
        with new_session() as s, s.begin():
            claimed = claim(s, execution.id, worker="bench", lease_s=60)
        assert claimed is not None
        for batch in range(0, 1000, 100):
            with new_session() as s, s.begin():
                renew_lease(
                    s, execution.id, attempt=claimed.attempt, lease_s=60, steps=steps[batch : batch + 100]
                )
        return execution.id, claimed.attempt

    # The finish transaction with and without the results (whose note is dropped before the commit),
    # alternating, so both see the same table sizes and cache state.
    timings: dict[bool, list[float]] = {True: [], False: []}
    for sample in range(2 * (samples + 1)):
        record = sample % 2 == 0
        execution_id, attempt = finished_execution()
        started = time.perf_counter()
        with new_session() as s, s.begin():
            finish(s, execution_id, attempt=attempt, status=Status.FAILED, actor="bench", summary={})
            if not record:
                changes.take_results_due(s)
        timings[record].append((time.perf_counter() - started) * 1000)
    with_results, without = sorted(timings[True][1:]), sorted(timings[False][1:])
    p95 = max(0, int(samples * 0.95) - 1)
    return {
        "finish_p50": statistics.median(with_results),
        "finish_p95": with_results[p95],
        "without_p50": statistics.median(without),
        "added_p50": statistics.median(with_results) - statistics.median(without),
    }


def use_database(pg_admin: str, dbname: str) -> str:
    """Point this process's settings at ``dbname`` on the server of ``pg_admin``; its libpq URL."""
    url = f"{pg_admin.rsplit('/', 1)[0]}/{dbname}"
    os.environ["ANVIL_DATABASE_URL"] = url.replace("postgresql://", "postgresql+psycopg://", 1)
    from anvil.settings import get_settings

    get_settings.cache_clear()
    return url


def fresh_database(pg_admin: str, dbname: str) -> None:
    """``dbname`` dropped if it was there, created empty and migrated to head."""
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{dbname}"')
    from anvil.migrate import upgrade

    upgrade(os.environ["ANVIL_DATABASE_URL"])


def drop_database(pg_admin: str, dbname: str) -> None:
    """This process's connections closed, then ``dbname`` dropped."""
    from db.session import _engines

    for engine in _engines.values():
        engine.dispose()
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def main() -> int:
    args = parse_args()
    url = use_database(args.pg_admin, DBNAME)
    machine = machine_info()
    now = datetime.now(UTC)
    if not args.reuse:
        fresh_database(args.pg_admin, DBNAME)
        started = time.perf_counter()
        seeded = seed(url, now, random.Random(12))
        took = time.perf_counter() - started
        print(f"seeded {seeded['results']:,} results of {len(seeded['tests']):,} tests in {took:.0f} s")
    try:
        figures = measure_queries(args.samples, now)
        figures["write 1,000-test results at finish"] = measure_write(args.samples)
        print(f"\nhistory benchmark  commit {machine['commit']}  {machine['nproc']} CPU {machine['cpu']}")
        print(f"  load average before: {machine['loadavg']}")
        for name, figure in figures.items():
            print(f"  {name:<58} " + "  ".join(f"{k} {v:7.1f} ms" for k, v in figure.items()))
    finally:
        if not args.keep:
            drop_database(args.pg_admin, DBNAME)
    return 0


def measure_queries(samples: int, now: datetime) -> dict[str, dict[str, float]]:
    """p50/p95 of the queries behind the history, statistics, flaky and selection endpoints."""
    from sqlalchemy import select

    from anvil.domain.flaky import Thresholds
    from anvil.domain.rules import parse_rules
    from anvil.domain.selection import Request
    from anvil.domain.windows import days
    from anvil.settings import get_settings
    from db.flaky import flaky_tests
    from db.history import list_tests, test_history
    from db.models import Test, TestCase
    from db.scopes import Scope
    from db.selection import select_cases
    from db.session import new_session
    from db.stats import stats

    settings = get_settings()
    thresholds = Thresholds.of(settings)
    window = days(settings.flaky_window_days)
    with new_session() as s:
        cases = list(
            s.scalars(select(TestCase).where(TestCase.name.like("bench-case-%")).order_by(TestCase.name))
        )
        one = cases[0]
        # A test with the most results: a history page of a test that ran every night.
        test_id = s.scalars(select(Test.id).where(Test.test_case_id == one.id).limit(1)).one()
        changed = ("tests/area3/test_mod2.py", "src/unmapped/module.py")[:1]

    # As the API process does once it has started (see there why).
    from api.app import freeze_startup_heap

    freeze_startup_heap()

    def run(fn: Callable[[Any], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with new_session() as s:
                return fn(s)

        return call

    request = Request(parse_rules(["failed-in-last:5", "flaky", "changed-files"]), (), changed)
    return {
        "stats, one case (30 d)": timed(
            run(lambda s: stats(s, scope=Scope(case_ids=(one.id,)), window=window, now=now)), samples
        ),
        "stats, everything (30 d)": timed(
            run(lambda s: stats(s, scope=Scope(), window=window, now=now)), samples
        ),
        "flaky list, everything (30 d)": timed(
            run(lambda s: flaky_tests(s, scope=Scope(), window=window, thresholds=thresholds, now=now)),
            samples,
        ),
        "a test's history page (50)": timed(run(lambda s: test_history(s, test_id, limit=50)), samples),
        "tests list, first page (50)": timed(run(lambda s: list_tests(s, limit=50, now=now)), samples),
        "select failed-in-last:5 + flaky + changed-files, 5,000 tests": timed(
            run(lambda s: select_cases(s, cases=cases, request=request, settings=settings, now=now)), samples
        ),
    }


if __name__ == "__main__":
    raise SystemExit(main())

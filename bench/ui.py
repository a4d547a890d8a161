"""The web interface at scale: every page's server time with 100,000 executions in the database.

    .venv/bin/python -m bench.ui [--keep] [--reuse] [--samples 30]

Seeds a database of its own (``anvil_bench_ui``, dropped afterwards unless ``--keep``) with the
history benchmark's data (bench/history.py: 20 pytest cases, 5,000 tests, 1,000,000 results over
200 days, 4,000 nightly runs), makes those runs real executions, and adds executions up to
100,000: API and CI submissions by 20 users over the same 200 days, on main and feature branches,
1,000 suite runs of 5 members each, a few hundred QUEUED at every priority, some RUNNING, ABORTED
ones with reasons, manual tests waiting for a tester; 30 schedules; one execution with 1,000 steps.
Then signs in to the interface in-process (the app as ``anvil api`` serves it) and prints p50/p95
of each page's time from request to the last byte of the answer. No network, no browser: this is
the server's time, which the issue's target (< 300 ms) is about.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.history import drop_database, fresh_database, use_database  # noqa: E402
from bench.history import seed as seed_history  # noqa: E402
from bench.report import machine_info  # noqa: E402

DBNAME = "anvil_bench_ui"
EXECUTIONS = 100_000
USERS = 20
SUITES, SUITE_RUNS, MEMBERS = 10, 1_000, 5
QUEUED_PER_PRIORITY = 60
PRIORITIES = ("CRITICAL", "HIGH", "NORMAL", "LOW", "DEFERRED")
BIG_STEPS = 1_000
ADMIN, PASSWORD = "bench-admin", "bench-ui-pw"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg-admin", default=os.environ.get("ANVIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument("--reuse", action="store_true", help="measure a database kept by --keep")
    return parser.parse_args()


def seed_executions(url: str, now: datetime) -> dict[str, int]:
    """Executions, suites, users, schedules, workers on top of the history data; returns counts."""
    from argon2 import PasswordHasher

    admin_hash = PasswordHasher().hash(PASSWORD)
    users = [uuid.uuid4() for _ in range(USERS)]
    start = now - timedelta(days=200)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (id, username, password_hash, role, is_active, created_at, token_generation) "
            "SELECT id, CASE WHEN n = 1 THEN %s ELSE 'user' || n END, %s, "
            "CASE WHEN n = 1 THEN 'admin' WHEN n < 5 THEN 'maintainer' ELSE 'tester' END, true, %s, 0 "
            "FROM unnest(%s::uuid[]) WITH ORDINALITY AS u(id, n)",
            (ADMIN, admin_hash, start, users),
        )
        cur.execute(
            "INSERT INTO test_cases (id, name, kind, spec, tags, timeout_s, version, created_at, updated_at) "
            "VALUES (%s, 'bench-manual-checkout', 'manual', "
            '\'{"steps": [{"action": "Open the cart", "expected": "The cart lists the items"}, '
            '{"action": "Pay", "expected": "A receipt is shown"}]}\', \'[]\', 900, 1, %s, %s)',
            (uuid.uuid4(), start, start),
        )
        cur.execute(
            "INSERT INTO test_suites (id, name, description, case_ids, tags, fail_fast, default_priority, "
            "version, created_at, updated_at) "
            "SELECT md5('suite' || s)::uuid, 'bench-suite-' || s, 'Five of the bench cases', "
            "(SELECT jsonb_agg(id ORDER BY name) FROM (SELECT id, name FROM test_cases "
            " WHERE name LIKE 'bench-case-%%' ORDER BY name OFFSET (s %% 4) * 5 LIMIT 5) c), "
            "'[]', false, 'NORMAL', 1, %s, %s FROM generate_series(1, %s) s",
            (start, start, SUITES),
        )
        # The history's nightly runs, as the scheduled executions they were.
        cur.execute(
            "INSERT INTO executions (id, test_case_id, root_execution_id, event_seq, case_snapshot, status, "
            "priority, attempt, max_attempts, trigger_kind, correlation_id, params, created_at, queued_at, "
            "publish_count, started_at, finished_at, worker, summary, retry_policy, retry_index, flaky, "
            "revision, branch) "
            "SELECT r.execution_id, r.test_case_id, r.execution_id, 6, "
            "jsonb_build_object('name', c.name, 'kind', 'pytest', 'spec', c.spec, 'version', 1), "
            "CASE WHEN r.failed + r.error > 0 THEN 'FAILED' ELSE 'PASSED' END, 'NORMAL', 1, 3, "
            "'scheduled', gen_random_uuid(), '{}', r.recorded_at - interval '2 minutes', "
            "r.recorded_at - interval '2 minutes', 1, r.recorded_at - interval '1 minute', r.recorded_at, "
            "'celery@bench-1', jsonb_build_object('passed', r.passed, 'failed', r.failed, "
            "'skipped', r.skipped, 'error', r.error), '{}', 0, false, "
            "lpad(to_hex(extract(epoch FROM r.recorded_at)::bigint), 40, '0'), r.branch "
            "FROM result_rollups r JOIN test_cases c ON c.id = r.test_case_id"
        )
        nightly = cur.rowcount
        span_s = 200 * 86400
        # Suite runs: the parent, then its members.
        cur.execute(
            "INSERT INTO executions (id, test_suite_id, root_execution_id, event_seq, case_snapshot, status, "
            "priority, attempt, max_attempts, trigger_kind, correlation_id, requested_by, params, "
            "created_at, queued_at, publish_count, started_at, finished_at, summary, retry_policy, "
            "retry_index, flaky, branch) "
            "SELECT md5('run' || n)::uuid, md5('suite' || (n %% %(suites)s + 1))::uuid, "
            "md5('run' || n)::uuid, "
            "4, jsonb_build_object('name', 'bench-suite-' || (n %% %(suites)s + 1), 'kind', 'suite', "
            "'fail_fast', false, 'version', 1, 'total', %(members)s), "
            "CASE WHEN n %% 9 = 0 THEN 'FAILED' ELSE 'PASSED' END, 'HIGH', 1, 1, 'api', "
            "md5('run' || n)::uuid, "
            "(%(users)s::uuid[])[n %% %(n_users)s + 1], '{}', at, at, 0, at, at + interval '5 minutes', "
            "jsonb_build_object('total', %(members)s, 'done', %(members)s, 'by_status', "
            "CASE WHEN n %% 9 = 0 THEN jsonb_build_object('PASSED', %(members)s - 1, 'FAILED', 1) "
            "ELSE jsonb_build_object('PASSED', %(members)s) END), '{}', 0, false, 'main' "
            "FROM (SELECT n, %(start)s + n * (%(span)s / %(runs)s) * interval '1 second' AS at "
            "      FROM generate_series(1, %(runs)s) n) g",
            {"suites": SUITES, "members": MEMBERS, "users": users, "n_users": USERS, "start": start,
             "span": span_s, "runs": SUITE_RUNS},
        )  # fmt: skip
        cur.execute(
            "INSERT INTO executions (id, test_case_id, parent_execution_id, root_execution_id, event_seq, "
            "case_snapshot, status, priority, attempt, max_attempts, trigger_kind, correlation_id, "
            "requested_by, params, created_at, queued_at, publish_count, started_at, finished_at, worker, "
            "summary, retry_policy, retry_index, flaky, branch) "
            "SELECT gen_random_uuid(), c.id, p.id, p.id, 6, "
            "jsonb_build_object('name', c.name, 'kind', 'pytest', 'spec', c.spec, 'version', 1), "
            "CASE WHEN p.status = 'FAILED' AND m = 1 THEN 'FAILED' ELSE 'PASSED' END, p.priority, 1, 3, "
            "'child', p.correlation_id, p.requested_by, '{}', p.created_at, p.created_at, 1, p.started_at, "
            "p.finished_at, 'celery@bench-2', '{\"passed\": 250}', '{}', 0, false, p.branch "
            "FROM executions p, LATERAL (SELECT id, name, spec, row_number() OVER (ORDER BY name) AS m "
            "  FROM test_cases WHERE id IN (SELECT jsonb_array_elements_text(s.case_ids)::uuid "
            "  FROM test_suites s WHERE s.id = p.test_suite_id)) c "
            "WHERE p.trigger_kind = 'api' AND p.test_suite_id IS NOT NULL"
        )
        members = cur.rowcount
        rest = EXECUTIONS - nightly - SUITE_RUNS - members
        # Single cases by API and CI: mostly finished; the newest few are waiting or running.
        waiting = QUEUED_PER_PRIORITY * len(PRIORITIES)
        cur.execute(
            "INSERT INTO executions (id, test_case_id, root_execution_id, event_seq, case_snapshot, status, "
            "priority, attempt, max_attempts, trigger_kind, correlation_id, requested_by, params, "
            "created_at, queued_at, publish_count, started_at, finished_at, worker, summary, error, "
            "retry_policy, retry_index, flaky, branch, lease_expires_at) "
            "SELECT g.id, c.id, g.id, 5, "
            "jsonb_build_object('name', c.name, 'kind', c.kind, 'spec', c.spec, 'version', 1), status, "
            "CASE WHEN status = 'QUEUED' THEN (%(priorities)s::text[])[n %% 5 + 1] ELSE 'NORMAL' END, "
            "CASE WHEN status = 'QUEUED' THEN 0 ELSE 1 END, 3, "
            "CASE WHEN n %% 3 = 0 THEN 'ci' ELSE 'api' END, "
            "g.id, (%(users)s::uuid[])[n %% %(n_users)s + 1], '{}', at, at, 1, "
            "CASE WHEN status = 'QUEUED' THEN NULL ELSE at + interval '5 seconds' END, "
            "CASE WHEN status IN ('QUEUED', 'RUNNING') THEN NULL ELSE at + interval '65 seconds' END, "
            "CASE WHEN status = 'QUEUED' THEN NULL ELSE 'celery@bench-' || (n %% 4 + 1) END, "
            "'{}', CASE WHEN status = 'ABORTED' THEN 'lost: the worker died 3 times while running it' "
            "WHEN status = 'FAILED' THEN '3 of 250 tests failed' END, '{}', 0, false, "
            "CASE WHEN n %% 5 = 0 THEN 'feature/f' || (n %% 17) ELSE 'main' END, "
            "CASE WHEN status = 'RUNNING' THEN now() + interval '1 minute' END "
            "FROM (SELECT gen_random_uuid() AS id, n, "
            "        %(start)s + n * (%(span)s::float / %(rest)s) * interval '1 second' AS at, "
            "        CASE WHEN n > %(rest)s - %(waiting)s THEN 'QUEUED' "
            "             WHEN n > %(rest)s - %(waiting)s - 8 THEN 'RUNNING' "
            "             WHEN n %% 211 = 0 THEN 'ABORTED' WHEN n %% 7 = 0 THEN 'FAILED' "
            "             WHEN n %% 53 = 0 THEN 'CANCELLED' ELSE 'PASSED' END AS status "
            "      FROM generate_series(1, %(rest)s) n) g "
            "JOIN LATERAL (SELECT id, name, kind, spec FROM test_cases "
            "              ORDER BY name OFFSET g.n %% 21 LIMIT 1) c ON true",
            {"priorities": list(PRIORITIES), "users": users, "n_users": USERS, "start": start,
             "span": span_s, "rest": rest, "waiting": waiting},
        )  # fmt: skip
        cur.execute(
            "INSERT INTO schedules (id, name, cron, timezone, test_case_id, priority, enabled, overlap, "
            "params, created_at, updated_at) "
            "SELECT gen_random_uuid(), 'nightly-' || c.name, '0 ' || (n %% 24) || ' * * *', 'Europe/Berlin', "
            "c.id, 'NORMAL', n %% 7 <> 0, 'skip', '{}', %s, %s "
            "FROM (SELECT id, name, row_number() OVER (ORDER BY name) AS n FROM test_cases "
            "      WHERE name LIKE 'bench-case-%%') c",
            (start, start),
        )
        cur.execute(
            "INSERT INTO workers (id, name, host, pid, slots, queues, version, started_at, heartbeat_at) "
            "SELECT gen_random_uuid(), 'celery@bench-' || n, 'bench-' || n, 1000 + n, 2, "
            '\'["anvil.critical", "anvil.high", "anvil.normal", "anvil.low", "anvil.deferred"]\', '
            "'0.1.0', now() - interval '1 day', now() FROM generate_series(1, 4) n"
        )
        # One big execution: 1,000 steps, each with output.
        cur.execute(
            "INSERT INTO step_traces (execution_id, attempt, seq, name, status, started_at, finished_at, "
            "duration_s, output, output_truncated, error, details, recorded_at) "
            "SELECT e.id, 1, n, 'tests/test_big.py::test_' || n, "
            "CASE WHEN n %% 97 = 0 THEN 'FAILED' ELSE 'PASSED' END, e.started_at, e.started_at, 0.05, "
            "repeat('output line ' || n || E'\\n', 5), false, "
            "CASE WHEN n %% 97 = 0 THEN 'AssertionError: assert 1 == 2' END, '{}', e.started_at "
            "FROM (SELECT id, started_at FROM executions WHERE status = 'FAILED' AND trigger_kind = 'api' "
            "      AND test_suite_id IS NULL ORDER BY created_at DESC LIMIT 1) e, "
            "generate_series(1, %s) n",
            (BIG_STEPS,),
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE executions")
        conn.execute("VACUUM ANALYZE step_traces")
        total = conn.execute("SELECT count(*) FROM executions").fetchone()
    return {"executions": total[0] if total else 0, "nightly": nightly, "suite members": members}


def pages() -> dict[str, str]:
    """The pages to time, by label: one of every kind, with the heaviest realistic arguments."""
    from sqlalchemy import select

    from db.models import Execution, Schedule, Test, TestCase, TestSuite, User
    from db.session import new_session

    with new_session() as s:
        big = s.scalars(
            select(Execution.id).where(Execution.status == "FAILED", Execution.trigger_kind == "api",
                                       Execution.test_suite_id.is_(None))
            .order_by(Execution.created_at.desc()).limit(1)
        ).one()  # fmt: skip
        suite_run = s.scalars(
            select(Execution.id)
            .where(Execution.test_suite_id.is_not(None), Execution.parent_execution_id.is_(None))
            .order_by(Execution.created_at.desc()).limit(1)
        ).one()  # fmt: skip
        case = s.scalars(select(TestCase).where(TestCase.name == "bench-case-3")).one()
        suite = s.scalars(select(TestSuite.id).order_by(TestSuite.name).limit(1)).one()
        test = s.scalars(select(Test.id).where(Test.test_case_id == case.id).limit(1)).one()
        user = s.scalars(select(User.username).where(User.username == "user7")).one()
        schedule = s.scalars(select(Schedule.id).limit(1)).one()
        last_month = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    return {
        "runs": "/ui/executions",
        "runs, status FAILED": "/ui/executions?status=FAILED",
        "runs, ABORTED (rare)": "/ui/executions?status=ABORTED",
        "runs, by who": f"/ui/executions?who={user}",
        "runs, one case": f"/ui/executions?target={case.name}",
        "runs, branch + since": f"/ui/executions?branch=main&since={last_month}",
        "runs, trigger ci": "/ui/executions?trigger=ci",
        "execution, 1,000 steps": f"/ui/executions/{big}",
        "execution, suite run": f"/ui/executions/{suite_run}",
        "suites and cases": "/ui/suites",
        "a suite": f"/ui/suites/{suite}",
        "a case": f"/ui/cases/{case.id}",
        "tests": "/ui/tests",
        "tests, after a run's results": "/ui/tests",
        "tests, board judged in full": "/ui/tests",
        "a test's history": f"/ui/tests/{test}",
        "stats, everything 30d": "/ui/stats",
        "manual testing": "/ui/manual",
        "schedules": "/ui/schedules",
        "a schedule's form": f"/ui/schedules/{schedule}/edit",
        "operations": "/ui/operations",
    }


def recent_runs(url: str, count: int) -> list[str]:
    """Runs that recorded results in the last 30 days, failures first: one is "recorded again" before
    each sample of the tests page after a run's results (see record_again)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT execution_id FROM result_rollups WHERE recorded_at > now() - interval '30 days' "
            "ORDER BY failed DESC, recorded_at DESC LIMIT %s",
            (count,),
        ).fetchall()
    return [str(row[0]) for row in rows]


def record_again(url: str, execution_id: str) -> None:
    """As if this run had just recorded its results: the tests page finds newer results and judges
    their tests again (the results keep their statuses; only their time moves to now)."""
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE test_results SET recorded_at = now() WHERE execution_id = %s", (execution_id,))
        conn.execute("UPDATE result_rollups SET recorded_at = now() WHERE execution_id = %s", (execution_id,))


def measure(samples: int, db_url: str) -> dict[str, dict[str, float]]:
    from fastapi.testclient import TestClient

    from api.app import app, freeze_startup_heap
    from api.ui import tests_page

    urls = pages()
    figures: dict[str, dict[str, float]] = {}
    with TestClient(app) as client:
        freeze_startup_heap()
        login = client.get("/ui/login")
        token = login.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed = client.post(
            "/ui/login",
            data={"username": ADMIN, "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        for label, url in urls.items():
            first = client.get(url)
            if first.status_code != 200:
                print(f"  !!! {label}: {url} answered {first.status_code}")
                continue
            times = []
            runs = recent_runs(db_url, samples) if "a run's results" in label else []
            for i in range(samples):
                if "in full" in label:  # as in a new API process, or every BOARD_TTL_S
                    tests_page._boards.clear()
                if runs:
                    record_again(db_url, runs[i % len(runs)])
                started = time.perf_counter()
                answer = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200
            times.sort()
            figures[label] = {
                "p50": statistics.median(times),
                "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
                "kB": len(first.content) / 1024,
            }
    return figures


def main() -> int:
    args = parse_args()
    os.environ.setdefault("ANVIL_SECRET_KEY", "bench-ui-secret-key-of-enough-length-0123456789")
    url = use_database(args.pg_admin, DBNAME)
    machine = machine_info()
    now = datetime.now(UTC)
    if not args.reuse:
        fresh_database(args.pg_admin, DBNAME)
        started = time.perf_counter()
        history = seed_history(url, now, random.Random(12))
        counts = seed_executions(url, now)
        took = time.perf_counter() - started
        print(
            f"seeded {counts['executions']:,} executions and {history['results']:,} results "
            f"of {len(history['tests']):,} tests in {took:.0f} s"
        )
    try:
        figures = measure(args.samples, url)
        print(
            f"\nweb interface benchmark  commit {machine['commit']}  {machine['nproc']} CPU {machine['cpu']}"
        )
        print(f"  load average before: {machine['loadavg']}   samples per page: {args.samples}")
        for label, figure in figures.items():
            flag = "" if figure["p95"] < 300 else "   !!! over 300 ms"
            print(
                f"  {label:<26} p50 {figure['p50']:7.1f} ms  p95 {figure['p95']:7.1f} ms  "
                f"{figure['kB']:6.0f} kB{flag}"
            )
    finally:
        if not args.keep:
            drop_database(args.pg_admin, DBNAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
